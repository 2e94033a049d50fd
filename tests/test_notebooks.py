"""The narrative notebooks: committed clean (no outputs, one `parameters` cell with the guide's defaults), and each runs
top to bottom under papermill on the embedded model, writing the result JSON and figures it promises.

Notebooks 00-05 are checked in the run folder of one `workbench run all --quick` (the `quick_run` fixture);
the model cache comes from $WORKBENCH_CACHE (or the user cache), and the kernel inherits this process's environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers import closing_markdown, notebook_parameters

from workbench.core.guide import CLASSES, EIGHT_PROMPTS, LENS_PROMPTS, TARGETS, TEST_PROMPTS
from workbench.core.tasks import parse_classes

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROBING = "01_baseline_probing.ipynb"
LENS = "02_logit_lens.ipynb"
EXPLORER = "06_layer_explorer.ipynb"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_is_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: commit it without outputs"
    params = notebook_parameters(nb)
    assert params["model"] == "default" or name == EXPLORER  # 06 reads $WORKBENCH_MODEL first
    if name != EXPLORER:  # the explorer writes nothing
        assert params["output_dir"] == "runs/notebooks"
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert index <= 2, "the parameters cell belongs near the top"
    # the last cell prints "What we found" from the results, so no measured number is typed in markdown
    assert nb.cells[-1].cell_type == "code" and "Markdown(" in nb.cells[-1].source


def test_notebook_defaults_are_the_seeds_prompts():
    probing = notebook_parameters(nbformat.read(NOTEBOOKS / PROBING, as_version=4))
    assert probing["seed"] == 0
    assert parse_classes(probing["classes"]).by_class() == CLASSES and probing["test_prompts"] == TEST_PROMPTS
    lens = notebook_parameters(nbformat.read(NOTEBOOKS / LENS, as_version=4))
    assert lens["prompts"] == LENS_PROMPTS and lens["targets"] == TARGETS
    assert lens["eight_prompts"] == EIGHT_PROMPTS and lens["layer"] is None


def _executed(quick_run, name: str) -> tuple[Path, object]:
    """The run folder of the session's `workbench run all --quick` and that notebook as papermill executed it there."""
    out, code, _, err = quick_run
    assert code == 0, err
    return out, nbformat.read(out / name, as_version=4)


@pytest.mark.notebook
@pytest.mark.integration
def test_baseline_probing_notebook(quick_run):
    out_dir, nb = _executed(quick_run, PROBING)
    doc = json.loads((out_dir / "baseline_classifier.json").read_text())
    assert doc["kind"] == "introspect.classifier" and doc["schema_version"] >= 1
    assert doc["num_layers"] == 30 and doc["classifier_layer_default"] == 16
    assert doc["settings"]["notebook"] == PROBING and doc["settings"]["seed"] == 0
    rows = doc["layer_results"]
    assert [r["layer"] for r in rows] == list(range(30))
    assert all(len(r["fold_accuracies"]) == doc["folds"] for r in rows)  # every layer: one accuracy per CV fold
    assert any(r["accuracy"] == 1.0 for r in rows)
    at16 = [t for t in doc["test_predictions"] if t["layer"] == 16]
    assert [t["prompt"] for t in at16] == TEST_PROMPTS
    assert (out_dir / "baseline_classifier.html").is_file()
    found = closing_markdown(nb)
    assert "Hidden-space classifier" in found and f"L{doc['classifier_layer_default']}" in found


@pytest.mark.notebook
@pytest.mark.integration
def test_logit_lens_notebook(quick_run):
    out_dir, nb = _executed(quick_run, LENS)
    doc = json.loads((out_dir / "baseline_logit_lens.json").read_text())
    assert doc["kind"] == "introspect.logit_lens" and doc["settings"]["notebook"] == LENS
    assert doc["layer"] == 16 and doc["num_layers"] == 30
    assert [r["prompt"] for r in doc["results"]] == LENS_PROMPTS
    for row in doc["results"]:
        probs, ranks = row["target_probs"], row["target_ranks"]
        assert set(probs) == set(TARGETS) == set(ranks)
        # ranks (over the whole vocabulary) order the targets as their probabilities do
        assert all(ranks[a] < ranks[b] for a in TARGETS for b in TARGETS if probs[a] > probs[b])
    subtract = next(t for t in doc["targets"] if t["word"] == "subtract")
    assert subtract["n_subtokens"] == 2 and subtract["token"] == "sub"
    grid = doc["all_layers"]
    assert grid["layers"] == list(range(30)) and len(grid["mean_expected_prob"]) == 30
    assert all(len(grid["target_probs"][w]) == 30 for w in TARGETS)
    eight = json.loads((out_dir / "baseline_logit_lens_eight.json").read_text())
    assert [r["prompt"] for r in eight["results"]] == EIGHT_PROMPTS and eight["layer"] == 16
    for figure in ("layer", "heatmap", "heatmap_log10", "eight_heatmap_log10"):
        assert (out_dir / f"baseline_logit_lens_{figure}.html").is_file()
    found = closing_markdown(nb)
    assert "Vocabulary-aligned classifier" in found and "'subtract' as 'sub'" in found

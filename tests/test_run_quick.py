"""The suite's one end-to-end pipeline on the embedded model (the session's ``quick_run``: `workbench run all --quick`,
one seed): every phase runs its notebook into one folder, verification writes claims.json and report.md from those
files, and `workbench publish` turns the executed notebooks into pages. What a second seed, `--strict`, a rerun and
`run compare` do is checked on a tiny model (tests/test_run_seeds.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from helpers import closing_markdown

from workbench.core.arithmetic import generate_arithmetic, held_out
from workbench.core.data import read_jsonl
from workbench.core.guide import THRESHOLDS
from workbench.experiment import report

pytestmark = [pytest.mark.integration, pytest.mark.notebook]
SEEDS = (42,)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def run(quick_run):
    out, code, stdout, err = quick_run
    assert code == 0, err
    return out, stdout


def test_every_phase_ran_into_one_folder(run):
    out, stdout = run
    doc = _read(out / "run.json")
    keys = [
        "generate",
        "baseline",
        *(f"phase1.seed-{s}" for s in SEEDS),
        *(f"phase2.seed-{s}" for s in SEEDS),
        "verify",
    ]
    assert list(doc["phases"]) == keys and all(p["status"] == "done" for p in doc["phases"].values())
    assert doc["settings"]["seeds"] == list(SEEDS) and doc["settings"]["quick"] is True and doc["quick"] is True
    assert all(p["git_commit"] == doc["git_commit"] for p in doc["phases"].values())
    for key in keys:
        assert (out / "phases" / f"{key}.done.json").is_file(), key
    log = (out / "run.log").read_text()
    assert all(f"phase {key}: done in" in log for key in keys)
    assert "claims: " in stdout and "report.md" in stdout
    for name in (
        "00_generate_data.ipynb",
        "01_baseline_probing.ipynb",
        "02_logit_lens.ipynb",
        "05_verification.ipynb",
        *(f"seed-{s}/{nb}" for s in SEEDS for nb in ("03_dual_reward_training.ipynb", "04_routing_training.ipynb")),
        "configs/phase1.yaml",
        "configs/phase2.yaml",
    ):
        assert (out / name).is_file(), name


def test_generate_notebook_writes_the_shared_data(run):
    out, _ = run
    train = read_jsonl(out / "data" / "train.jsonl")
    heldout = read_jsonl(out / "data" / "heldout.jsonl")
    assert train == generate_arithmetic(64, 42)  # the guide's generator, seed 42 (tests/test_data.py checks it)
    assert heldout == held_out(train, 32) and not {r["prompt"] for r in train} & {r["prompt"] for r in heldout}
    g = _read(out / "data" / "generate.json")
    assert g["heldout_in_train"] == 0 and g["last_prompt_tokens"] == {" ": 64}
    assert all(n == 0 for c in g["violations"].values() for n in c.values())
    assert "Every record follows the generator's rules" in closing_markdown(
        nbformat.read(out / "00_generate_data.ipynb", 4)
    )
    for s in SEEDS:  # every seed trained on, and was measured on, these files
        m = _read(out / f"seed-{s}" / "phase1_adapter" / "metrics.json")
        assert m["config"]["data"] == str(out / "data" / "train.jsonl") and m["config"]["seed"] == s
        assert m["eval_prompts"] == 32 and m["steps"] == 4
        m2 = _read(out / f"seed-{s}" / "phase2_adapter" / "metrics.json")
        assert m2["config"]["eval_data"] == str(out / "data" / "heldout.jsonl")
        assert m2["config"]["adapter"] == str(out / f"seed-{s}" / "phase1_adapter")


def test_verification_judges_the_run(run):
    out, _ = run
    doc = _read(out / "claims.json")
    claims = {c["id"]: c for c in doc["claims"]}
    assert list(claims) == [
        "base_probe_all_layers",
        "base_probe_classifier_layer",
        "base_lens",
        "phase1_lens",
        "phase1_eight",
        "phase1_probe",
        "phase2_unchanged",
        "phase2_answers",
        "answers",
    ]
    assert doc["seeds"] == list(SEEDS) and doc["thresholds"] == THRESHOLDS
    # what verification reports equals what the phases wrote
    for i, s in enumerate(SEEDS):
        m = _read(out / f"seed-{s}" / "phase1_adapter" / "metrics.json")
        assert claims["phase1_lens"]["values"][i] == m["after"]["lens"]["mean_correct_target_prob"]
        check = _read(out / f"seed-{s}" / "phase2_classifier_check.json")
        assert claims["phase2_unchanged"]["per_seed"][str(s)] is (check["max_abs_diff"] <= 1e-5)
    assert claims["phase2_unchanged"]["verdict"] == "holds"  # frozen layers stay frozen even after 4 steps
    assert claims["base_lens"]["verdict"] == "holds" and claims["base_probe_classifier_layer"]["verdict"] == "holds"
    assert claims["phase1_lens"]["verdict"] == "fails"  # 4 steps do not make a classifier
    assert claims["phase1_lens"]["per_seed"] == {"42": False}
    text = (out / "report.md").read_text()
    assert report.claims_table(doc["claims"]) in text and "--quick" in text
    found = closing_markdown(nbformat.read(out / "05_verification.ipynb", 4))
    assert "Verification" in found and "1 training seed" in found
    for name in ("verification_lens", "verification_probe", "verification_answers", "baseline_classifier",
                 "seed-42/phase1_losses", "seed-42/phase2_adapter_changes"):  # fmt: skip
        assert (out / f"{name}.html").is_file(), name
    assert "Answers on held-out prompts: `verification_answers.html`" in text  # no PNG in this run: it names the page


def test_executed_notebooks_become_html_pages_with_their_figures(run, tmp_path):
    """What `workbench publish` writes into docs/notebooks/: one page per executed notebook (the first seed's 03 and
    04), each plotly figure drawn by the plotly.js beside it, nothing fetched from elsewhere."""
    from workbench.experiment.layout import RunLayout
    from workbench.experiment.publish import publish_notebooks

    out, _ = run
    written = publish_notebooks(RunLayout(out), tmp_path / "notebooks")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "plotly.min.js",
            "00_generate_data.html",
            "01_baseline_probing.html",
            "02_logit_lens.html",
            "03_dual_reward_training.html",
            "04_routing_training.html",
            "05_verification.html",
        ]
    )
    page = (tmp_path / "notebooks" / "03_dual_reward_training.html").read_text(encoding="utf-8")
    figures = sum(
        "application/vnd.plotly.v1+json" in o.get("data", {})
        for c in nbformat.read(out / "seed-42" / "03_dual_reward_training.ipynb", 4).cells
        for o in c.get("outputs", [])
    )
    assert figures and page.count("Plotly.newPlot(") == figures and page.count('src="plotly.min.js"') == 1
    assert not re.findall(r'<script[^>]*src="https?://', page)
    assert "Dual-reward training." in page  # the closing findings, rendered

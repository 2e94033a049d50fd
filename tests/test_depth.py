"""Any depth: every phase works at the classifier layer int(0.55 n) of the loaded model, never SmolLM2's 16. The
22-layer model (TinyLlama's depth, layer 12) goes through the whole experiment in the session's ``tiny_run``; the
guide's other depths (16 -> 8, 40 -> 22) train phase 1 and phase 2 in this process from the committed configs, whose
`layer: auto` and `freeze_layers: through-classifier` resolve by that rule."""

from __future__ import annotations

import json

import pytest
from conftest import build_tiny_llama, build_tiny_tokenizer

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.guide import classifier_layer
from workbench.experiment.phases import CONFIGS
from workbench.experiment.summary import classifier_check, metrics_lens_change
from workbench.training.config import load_config
from workbench.training.evaluation import adapter_layer_changes
from workbench.training.loop import train


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _check_phases(phase1_dir, phase2_dir, layer: int) -> None:
    phase1 = _json(phase1_dir / "config.json")
    assert phase1["intermediate_loss_layer"] == phase1["intermediate_loss"]["layer"] == phase1["eval_layer"] == layer
    assert phase1["as_written"] == {"intermediate_loss.layer": "auto", "dtype": "auto"}
    assert _json(phase1_dir / "metrics.json")["after"]["lens"]["layer"] == layer
    phase2 = _json(phase2_dir / "config.json")
    assert phase2["frozen_layers"] == list(range(layer + 1)) and phase2["freeze_layers"] == f"0-{layer}"
    assert phase2["as_written"] == {"freeze_layers": "through-classifier", "dtype": "auto"}
    assert phase2["eval_layer"] == layer


@pytest.mark.integration
@pytest.mark.notebook
def test_the_whole_experiment_runs_at_layer_12_of_a_22_layer_model(tiny_run):
    run, code, _, err, _ = tiny_run
    assert code == 0, err
    layer = classifier_layer(22)
    assert layer == 12
    assert _json(run / "baseline_classifier.json")["classifier_layer_default"] == layer
    assert _json(run / "baseline_logit_lens.json")["layer"] == layer
    _check_phases(run / "seed-42" / "phase1_adapter", run / "seed-42" / "phase2_adapter", layer)
    check = _json(run / "seed-42" / "phase2_classifier_check.json")
    assert check["layer"] == layer and check["frozen_layers"] == list(range(layer + 1)) and check["unchanged"]
    assert check["moved_layers"] and min(check["moved_layers"]) > layer  # later layers trained, frozen ones not
    claims = {c["id"]: c for c in _json(run / "claims.json")["claims"]}
    assert f"at L{layer} " in claims["base_probe_classifier_layer"]["measured"]
    assert f"(layers L0-L{layer} frozen)" in claims["phase2_unchanged"]["measured"]
    report = (run / "report.md").read_text(encoding="utf-8")
    assert f"(layers L0-L{layer} frozen)" in report and f"at L{layer} (control" in report


@pytest.mark.slow
@pytest.mark.parametrize(("n_layers", "layer"), [(16, 8), (40, 22)])
def test_phase1_and_phase2_resolve_the_layer_of_the_guides_other_depths(tmp_path, n_layers, layer):
    model = tmp_path / f"llama-{n_layers}"
    tokenizer = build_tiny_tokenizer()
    build_tiny_llama(len(tokenizer), n_layers=n_layers).save_pretrained(model)
    tokenizer.save_pretrained(model)
    write_jsonl(tmp_path / "train.jsonl", generate_arithmetic(8, 42))
    write_jsonl(tmp_path / "heldout.jsonl", generate_arithmetic(4, 7))
    common = {"model": str(model), "data": str(tmp_path / "train.jsonl"), "max_steps": 2,
              "eval_data": str(tmp_path / "heldout.jsonl")}  # fmt: skip
    phase1, phase2 = tmp_path / "phase1", tmp_path / "phase2"
    train(load_config(CONFIGS / "phase1.yaml", {**common, "output": str(phase1)}), device="cpu", progress=False)
    metrics = train(
        load_config(CONFIGS / "phase2.yaml", {**common, "output": str(phase2), "adapter": str(phase1)}),
        device="cpu",
        progress=False,
    )
    assert classifier_layer(n_layers) == layer
    _check_phases(phase1, phase2, layer)
    changes = adapter_layer_changes(phase1, phase2)
    moved = [r["layer"] for r in changes if r["max_abs_change"] != 0.0]
    assert moved and min(moved) > layer  # training moved the layers after the classifier, none through it
    assert metrics_lens_change(metrics)["max_abs_diff"] <= 1e-6  # the lens at the frozen layer reads what it read
    lens_same = {"layer": layer, "max_abs_diff_target_prob": 0.0}
    assert classifier_check(lens_same, metrics_lens_change(metrics), changes, list(range(layer + 1)))["unchanged"]

"""The training notebooks: 03 (phase 1, dual reward) and 04 (phase 2, routing) are committed clean with the guide's
defaults in one `parameters` cell; executed by the session's quick run (conftest ``quick_run``, `workbench run all
--quick`, the only place `make test` runs them), they write the files they promise into ``seed-<s>/``, and
04 continues the adapter 03 wrote there. Their closing paragraphs come from ``workbench.experiment.findings``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers import closing_markdown, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PHASE1 = "03_dual_reward_training.ipynb"
PHASE2 = "04_routing_training.ipynb"


def test_training_notebook_defaults_are_the_seeds():
    p1 = notebook_parameters(nbformat.read(NOTEBOOKS / PHASE1, as_version=4))
    assert (p1["model"], p1["output_dir"], p1["seed"]) == ("default", "runs/notebooks", 42)
    assert (p1["max_steps"], p1["train_samples"], p1["eval_samples"]) == (500, 1000, 200)
    assert p1["config"] == "configs/phase1.yaml"
    p2 = notebook_parameters(nbformat.read(NOTEBOOKS / PHASE2, as_version=4))
    assert (p2["model"], p2["output_dir"], p2["seed"], p2["max_steps"]) == ("default", "runs/notebooks", 42, 300)
    assert p2["config"] == "configs/phase2.yaml" and p2["phase1_adapter"] is None


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.notebook
@pytest.mark.integration
def test_dual_reward_then_routing_notebooks(quick_run):
    run, code, _, err = quick_run
    assert code == 0, err
    out = run / "seed-42"
    nb1 = nbformat.read(out / PHASE1, as_version=4)
    phase1 = out / "phase1_adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "config.json", "train_log.jsonl"):
        assert (phase1 / name).is_file(), name
    m1 = _json(phase1 / "metrics.json")
    assert m1["layer"] == 16 and m1["steps"] == 4 and m1["eval_prompts"] == 32
    assert m1["before"]["lens"]["prompts"] == 32 and m1["after"]["lens"]["layer"] == 16
    resolved1 = _json(phase1 / "config.json")
    assert resolved1["intermediate_loss_layer"] == 16 and resolved1["intermediate_loss"]["weight"] == 0.4
    assert resolved1["intermediate_loss"]["layer"] == 16 and resolved1["as_written"] == {
        "intermediate_loss.layer": "auto",
        "dtype": "auto",
    }
    assert (
        resolved1["learning_rate"] == 1e-3
        and resolved1["lora_targets"] == "v_proj,o_proj"
        and resolved1["frozen_layers"] == []
    )
    log1 = [json.loads(line) for line in (phase1 / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log1] == [1, 2, 3, 4] and all("classifier_loss" in r for r in log1)
    eight = _json(out / "phase1_lens_eight.json")
    assert eight["kind"] == "introspect.logit_lens" and eight["layer"] == 16 and len(eight["results"]) == 8
    assert eight["settings"]["notebook"] == PHASE1 and eight["adapter"] == str(phase1)
    assert len(eight["all_layers"]["mean_expected_prob"]) == 30
    assert _json(out / "phase1_lens_eight_before.json")["adapter"] is None
    probe = _json(out / "phase1_classifier.json")  # the hidden-space probe, refitted on the trained model
    assert probe["adapter"] == str(phase1) and [r["layer"] for r in probe["layer_results"]] == list(range(30))
    assert not (out / "phase1_train.jsonl").exists() and m1["config"]["data"] == str(run / "data" / "train.jsonl")
    assert _json(out / "phase1_summary.json")["steps"] == 4
    for figure in ("losses", "lens_by_operation", "lens_eight_layer", "lens_eight_heatmap", "classifier"):
        assert (out / f"phase1_{figure}.html").is_file(), figure
    found1 = closing_markdown(nb1)
    assert "Dual-reward training" in found1 and "L16" in found1 and "'subtract' as 'sub'" in found1
    assert "Hidden-space classifier after training" in found1

    nb2 = nbformat.read(out / PHASE2, as_version=4)
    phase2 = out / "phase2_adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "config.json", "train_log.jsonl"):
        assert (phase2 / name).is_file(), name
    resolved2 = _json(phase2 / "config.json")
    assert resolved2["adapter"] == str(phase1) and resolved2["frozen_layers"] == list(range(17))
    assert resolved2["freeze_layers"] == "0-16" and resolved2["as_written"] == {
        "freeze_layers": "through-classifier",
        "dtype": "auto",
    }
    assert resolved2["mask_prompt"] is True and resolved2["learning_rate"] == 5e-4
    assert resolved2["intermediate_loss_layer"] is None
    log2 = [json.loads(line) for line in (phase2 / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log2] == [1, 2, 3, 4] and not any("classifier_loss" in r for r in log2)
    m2 = _json(phase2 / "metrics.json")
    assert m2["layer"] == 16 and m2["steps"] == 4
    # the classifier is frozen: phase 2's lens at layer 16 reads what phase 1 left there, before and after
    before, after = m2["before"]["lens"], m2["after"]["lens"]
    assert after["mean_correct_target_prob"] == pytest.approx(before["mean_correct_target_prob"], abs=1e-5)
    for op, p in before["per_operation_prob"].items():
        assert after["per_operation_prob"][op] == pytest.approx(p, abs=1e-5)
    assert after["top1_score"] == before["top1_score"]
    assert before["mean_correct_target_prob"] == pytest.approx(
        m1["after"]["lens"]["mean_correct_target_prob"], abs=1e-5
    )
    lens_before, lens_after = _json(out / "phase2_lens_before.json"), _json(out / "phase2_lens_after.json")
    assert [r["prompt"] for r in lens_before["results"]] == [r["prompt"] for r in lens_after["results"]]
    assert len(lens_before["results"]) == 32
    for b, a in zip(lens_before["results"], lens_after["results"]):
        for word, p in b["target_probs"].items():
            assert abs(a["target_probs"][word] - p) <= 1e-5
    check = _json(out / "phase2_classifier_check.json")
    assert check["unchanged"] is True and check["max_abs_diff"] <= 1e-5 and check["frozen_layers_moved"] == []
    assert check["still_layers"][:17] == list(range(17)) and all(layer > 16 for layer in check["moved_layers"])
    greedy = _json(out / "phase2_greedy_after.json")
    assert len(greedy["rows"]) == 32
    for figure in ("losses", "adapter_changes", "lens_by_operation"):
        assert (out / f"phase2_{figure}.html").is_file(), figure
    found2 = closing_markdown(nb2)
    assert "Classifier unchanged" in found2 and "Answers" in found2

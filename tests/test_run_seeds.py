"""Two training seeds through the runner (the session's ``tiny_run``: `workbench run all --quick --task sentiment
--seeds 2` on a tiny 22-layer Llama): the seeds train differently, verification summarises them with mean, spread and
the seeds a claim holds for, `--strict` and `--threshold` decide the exit status, a rerun keeps the folder's model and
task and skips what is done, a quick run is never published, and `run compare` trains every method on the run's data.
Tests that change the folder work on a copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli
from safetensors.torch import load_file

from workbench.core.guide import THRESHOLDS
from workbench.experiment import report
from workbench.experiment.claims import failures

pytestmark = [pytest.mark.integration, pytest.mark.notebook]
SEEDS = (42, 43)
# every claim holds on the random model with these (the ones not named stay the defaults)
LOOSE = {"probe_accuracy": 0.0, "min_selectivity": -1.0, "base_lens_max_prob": 1.0, "trained_lens_min_prob": 0.0,
         "eight_min_score": 0.0, "min_answer_gain": -1.0}  # fmt: skip


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def run(tiny_run, monkeypatch):
    out, code, _, err, env = tiny_run
    assert code == 0, err
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return out


@pytest.fixture
def copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_every_phase_ran_once_per_seed_into_one_folder(run):
    doc = _read(run / "run.json")
    keys = ["generate", "baseline", *(f"{p}.seed-{s}" for p in ("phase1", "phase2") for s in SEEDS), "verify"]
    assert list(doc["phases"]) == keys and all(p["status"] == "done" for p in doc["phases"].values())
    assert doc["settings"]["seeds"] == list(SEEDS) and doc["quick"] is True
    for s in SEEDS:
        m = _read(run / f"seed-{s}" / "phase1_adapter" / "metrics.json")
        assert m["config"]["seed"] == s and m["config"]["data"] == str(run / "data" / "train.jsonl")
        assert _read(run / f"seed-{s}" / "phase2_adapter" / "config.json")["adapter"] == str(
            run / f"seed-{s}" / "phase1_adapter"
        )


def test_seeds_train_differently(run):
    logs = [(run / f"seed-{s}" / "phase1_adapter" / "train_log.jsonl").read_text() for s in SEEDS]
    losses = [[json.loads(line)["loss"] for line in log.splitlines()] for log in logs]
    assert len(losses[0]) == len(losses[1]) == 4 and losses[0] != losses[1]
    a, b = (load_file(run / f"seed-{s}" / "phase1_adapter" / "adapter_model.safetensors") for s in SEEDS)
    assert a.keys() == b.keys() and any(not a[k].equal(b[k]) for k in a)


def test_verification_summarises_the_seeds(run):
    doc = _read(run / "claims.json")
    claims = {c["id"]: c for c in doc["claims"]}
    assert doc["seeds"] == list(SEEDS) and doc["thresholds"] == THRESHOLDS
    lens = [_read(run / f"seed-{s}" / "phase1_adapter" / "metrics.json")["after"]["lens"] for s in SEEDS]
    assert claims["phase1_lens"]["values"] == [m["mean_correct_target_prob"] for m in lens]
    for claim in ("phase1_lens", "phase2_unchanged"):  # the per-seed verdicts, counted in the text
        per_seed = claims[claim]["per_seed"]
        assert set(per_seed) == {str(s) for s in SEEDS}
        assert f"holds for {sum(per_seed.values())}/2 seeds" in claims[claim]["measured"]
    for s in SEEDS:
        check = _read(run / f"seed-{s}" / "phase2_classifier_check.json")
        assert claims["phase2_unchanged"]["per_seed"][str(s)] is (
            check["max_abs_diff"] <= THRESHOLDS["phase2_tolerance"]
        )
    assert claims["phase2_unchanged"]["verdict"] == "holds"  # frozen layers stay frozen, on every seed
    assert report.claims_table(doc["claims"]) in (run / "report.md").read_text()
    for name in ("verification_lens", "verification_probe", "verification_answers", "seed-43/phase2_adapter_changes"):
        assert (run / f"{name}.html").is_file() and not (run / f"{name}.png").exists(), name  # PNG export is off


def test_strict_exits_1_naming_what_fails_and_thresholds_change_the_verdicts(run, copy, capsys):
    code, _, err = cli(capsys, "run", "verify", "--out", copy, "--strict")
    failed = failures(_read(copy / "claims.json")["claims"])
    assert code == 1 and failed and "Traceback" not in err
    assert err.strip() == "error: --strict: " + "; ".join(f"{c['id']} {c['verdict']}" for c in failed)
    given = [x for name, value in LOOSE.items() for x in ("--threshold", f"{name}={value}")]
    before = {p: (copy / "phases" / f"{p}.done.json").read_text() for p in ("generate", "phase1.seed-42")}
    # a rerun without --model or --task keeps the folder's: every phase is done already, verification runs again
    code, stdout, err = cli(capsys, "run", "all", "--quick", "--out", copy, "--strict", *given)
    assert code == 0, err
    doc = _read(copy / "claims.json")
    assert doc["failed"] == [] and doc["thresholds"] == {**THRESHOLDS, **LOOSE}
    assert all((copy / "phases" / f"{p}.done.json").read_text() == text for p, text in before.items())
    phases = _read(copy / "run.json")["phases"]
    skipped = [k for k in phases if f"phase {k}: done already" in stdout]
    assert skipped == [k for k in phases if k != "verify"] and "phase verify: done in" in stdout
    settings = _read(copy / "run.json")["settings"]
    assert settings["task"] == "sentiment" and _read(copy / "run.json")["model"] == str(run.parent / "llama-22")
    assert _read(copy / "run.json")["quick"] is True and "This is a `--quick` run" in (copy / "report.md").read_text()


def test_publish_refuses_a_quick_run_and_writes_nothing(run, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    pages = {
        "README.md": "<!-- claims:start -->\n<!-- claims:end -->\n",
        "docs/results.md": "# R\n",
        "docs/causal.md": "# C\n",
    }
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    code, _, err = cli(capsys, "publish", run, "--root", tmp_path)
    assert_one_line_error(code, err, "--quick run")
    assert all((tmp_path / name).read_text() == text for name, text in pages.items())
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["causal.md", "results.md"]  # no records, figures


def test_compare_quick_trains_every_method_on_the_runs_data(run, copy, tmp_path, capsys):
    """`workbench run compare --quick` into the run folder: every method trained 2 steps on the folder's model and its
    data/, measured alike; without data/ it says which phase makes it."""
    code, _, err = cli(capsys, "run", "compare", "--quick", "--out", tmp_path / "fresh")
    assert_one_line_error(code, err, "needs", "`workbench run generate")
    code, _, err = cli(capsys, "run", "compare", "--quick", "--seeds", "1", "--out", copy)  # the run has two
    assert code == 0, err
    doc = _read(copy / "comparisons.json")
    assert [r["method"] for r in doc["rows"]] == ["none", "lora_standard", "sft_answers", "grpo", "dual_vo", "dual_qk"]
    assert doc["seeds"] == [42] and doc["steps"] == 2 and doc["eval_samples"] == 8
    assert all(r["heldout_prompts"] == 8 and r["eight_total"] == 8 and r["layer"] == 12 for r in doc["rows"])
    for method in ("lora_standard", "sft_answers", "dual_vo", "dual_qk"):
        config = _read(copy / "compare" / method / "seed-42" / "adapter" / "config.json")
        assert config["model_id"] == str(run.parent / "llama-22") and config["max_steps"] == 2
    assert (copy / "compare" / "grpo" / "seed-42" / "adapter" / "grpo_log.jsonl").is_file()
    text = (copy / "comparisons.md").read_text()
    assert doc["tables"]["methods"] in text and doc["tables"]["targets"] in text
    heldout = (copy / "data" / "heldout.jsonl").read_text().splitlines()
    assert (copy / "compare" / "heldout.jsonl").read_text().splitlines() == heldout[:8]  # the run's first 8
    run_doc = _read(copy / "run.json")
    assert run_doc["phases"]["compare"]["status"] == "done" and run_doc["settings"]["phase"] == "all"

"""Verification (`workbench.experiment.claims`, `report`) on run folders written here: each claim's verdict follows
its threshold, several seeds give mean, spread and mixed verdicts, a missing file is "not measured", and the report
embeds the figures there are. Publishing is tests/test_publish.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.core.errors import WorkbenchError
from workbench.experiment import claims as verification
from workbench.experiment import report
from workbench.experiment.layout import RunLayout

OPS = ("multiply", "add", "subtract", "divide")


def _seed_roots(run_dir, seeds=None) -> dict:
    return {s: files.root for s, files in RunLayout(run_dir).seeds(seeds).items()}


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _probe(accuracies: list[float], control: float = 0.25) -> dict:
    return {
        "model": "m",
        "num_layers": len(accuracies),
        "classifier_layer_default": 2,
        "classes": list(OPS),
        "folds": 4,
        "best_layer": 0,
        "best_accuracy": max(accuracies),
        "test_predictions": [],
        "layer_results": [
            {"layer": i, "accuracy": a, "std": 0.0, "control_accuracy": control, "selectivity": a - control}
            for i, a in enumerate(accuracies)
        ],
    }


def _lens(expected_probs: list[float], other: float = 1e-9, correct: int = 0) -> dict:
    results = []
    for i, p in enumerate(expected_probs):
        op = OPS[i % 4]
        results.append(
            {
                "prompt": f"p{i}",
                "expected": op,
                "top_token": " ",
                "top_token_id": 1,
                "top_prob": 0.9,
                "correct": i < correct,
                "target_probs": {w: (p if w == op else other) for w in OPS},
                "target_ranks": {w: 5 for w in OPS},
            }
        )
    return {
        "model": "m",
        "layer": 2,
        "num_layers": 4,
        "results": results,
        "targets": [{"word": w, "token": w, "n_subtokens": 1} for w in OPS],
        "target_token_ids": {w: i for i, w in enumerate(OPS)},
        "score": {"correct": correct, "total": len(results)},
        "mean_expected_prob": sum(expected_probs) / len(expected_probs),
    }


def _metrics(before: float, after: float, em: tuple[float, float]) -> dict:
    def side(p, e):
        return {
            "lens": {
                "layer": 2,
                "prompts": 8,
                "mean_correct_target_prob": p,
                "top1_score": {"correct": 0, "total": 8},
                "per_operation_prob": {op: p for op in OPS},
            },
            "answer_loss": 2.0,
            "answer_exact_match": e,
            "prompts": 8,
        }

    return {
        "kind": "train.sft",
        "model": "m",
        "layer": 2,
        "steps": 10,
        "eval_prompts": 8,
        "config": {},
        "before": side(before, em[0]),
        "after": side(after, em[1]),
    }


def make_run(root: Path, seeds: dict, base_probe=(0.7, 1.0, 1.0, 1.0)) -> Path:
    """A run folder: baseline results at the root, phase 1/2 results per seed (seed -> dict of knobs)."""
    _write(root / "baseline_classifier.json", _probe(list(base_probe)))
    _write(root / "baseline_logit_lens.json", _lens([1e-12] * 4))
    _write(root / "baseline_logit_lens_eight.json", _lens([1e-12] * 8))
    for seed, k in seeds.items():
        folder = root / f"seed-{seed}"
        _write(folder / "phase1_adapter" / "metrics.json", _metrics(1e-12, k["lens"], (0.03, 0.08)))
        _write(folder / "phase2_adapter" / "metrics.json", _metrics(k["lens"], k["lens"], (0.08, 0.09)))
        _write(folder / "phase1_lens_eight.json", _lens([0.9] * 8, correct=k["eight"]))
        _write(folder / "phase1_classifier.json", _probe([1.0, 1.0, 1.0, 1.0]))
        _write(
            folder / "phase2_classifier_check.json",
            {
                "unchanged": k["diff"] <= 1e-5,
                "max_abs_diff": k["diff"],
                "frozen_layers": [0, 1, 2],
                "frozen_layers_moved": [],
                "layer": 2,
            },
        )
        _write(folder / "phase2_greedy_before.json", {"accuracy": 0.05, "rows": []})
        _write(folder / "phase2_greedy_after.json", {"accuracy": k["greedy"], "rows": []})
    return root


def _claims(root: Path, **limits) -> dict:
    return {c["id"]: c for c in verification.judge(verification.collect(root), limits)}


GOOD = {"lens": 0.6, "eight": 8, "diff": 0.0, "greedy": 0.10}


def test_every_claim_of_a_good_single_seed_run_holds_except_all_layers(tmp_path):
    claims = _claims(make_run(tmp_path, {42: GOOD}))
    assert {k: c["verdict"] for k, c in claims.items()} == {
        "base_probe_all_layers": "fails",
        "base_probe_classifier_layer": "holds",
        "base_lens": "holds",
        "phase1_lens": "holds",
        "phase1_eight": "holds",
        "phase1_probe": "holds",
        "phase2_unchanged": "holds",
        "phase2_answers": "holds",
        "answers": "reported",
    }
    assert claims["base_probe_all_layers"]["measured"] == "3/4 layers reach 100% (L1-L3); lowest 0.70 at L0"
    assert (
        claims["phase1_lens"]["measured"].startswith("60.0% correct-operation probability")
        and "within" in claims["phase1_lens"]["measured"]
    )
    assert claims["phase2_answers"]["measured"] == (
        "greedy answers correct 5.0% → 10.0% on held-out prompts (gain +5.0 points)"
    )
    assert claims["answers"]["measured"] == "teacher-forced exact match 3.0% → 8.0% → 9.0% on held-out prompts"
    assert verification.failures(list(claims.values())) == [claims["base_probe_all_layers"]]


def test_thresholds_decide_the_verdicts(tmp_path):
    root = make_run(tmp_path, {42: GOOD})
    assert _claims(root, probe_accuracy=0.7)["base_probe_all_layers"]["verdict"] == "holds"
    assert _claims(root, trained_lens_min_prob=0.61)["phase1_lens"]["verdict"] == "fails"
    assert _claims(root, trained_lens_min_prob=0.6)["phase1_lens"]["verdict"] == "holds"
    assert _claims(root, min_answer_gain=0.051)["phase2_answers"]["verdict"] == "fails"
    assert _claims(root, base_lens_max_prob=1e-12)["base_lens"]["verdict"] == "fails"
    assert _claims(root, min_selectivity=0.8)["base_probe_classifier_layer"]["verdict"] == "fails"


def test_seeds_give_mean_spread_and_mixed_verdicts(tmp_path):
    seeds = {1: {**GOOD, "lens": 0.5}, 2: {**GOOD, "lens": 0.7, "eight": 7, "diff": 1e-3}, 3: {**GOOD, "lens": 0.9}}
    claims = _claims(make_run(tmp_path, seeds))
    lens = claims["phase1_lens"]
    assert lens["verdict"] == "holds" and lens["values"] == [0.5, 0.7, 0.9]
    assert lens["measured"].startswith("70.0% ± 20.0% [50.0%, 90.0%]") and "partly within" in lens["measured"]
    assert claims["phase1_eight"]["verdict"] == "mixed" and claims["phase1_eight"]["per_seed"] == {
        "1": True,
        "2": False,
        "3": True,
    }
    assert "holds for 2/3 seeds" in claims["phase1_eight"]["measured"]
    assert claims["phase2_unchanged"]["verdict"] == "mixed"
    assert _claims(tmp_path, phase2_tolerance=1e-2)["phase2_unchanged"]["verdict"] == "holds"


def test_missing_files_are_not_measured_and_a_partial_seed_is_mixed(tmp_path):
    root = make_run(tmp_path, {1: GOOD, 2: GOOD})
    (root / "seed-2" / "phase1_classifier.json").unlink()
    (root / "baseline_logit_lens.json").unlink()
    claims = _claims(root)
    assert (
        claims["base_lens"]["verdict"] == "not measured"
        and "baseline_logit_lens.json" in claims["base_lens"]["measured"]
    )
    assert (
        claims["phase1_probe"]["verdict"] == "mixed" and "not measured for seed 2" in claims["phase1_probe"]["measured"]
    )
    empty = {c["id"]: c["verdict"] for c in verification.judge(verification.collect(tmp_path / "nothing"))}
    assert set(empty.values()) == {"not measured"}


def test_seed_folders_and_explicit_seeds(tmp_path):
    make_run(tmp_path, {42: GOOD, 43: GOOD, 100: GOOD})
    (tmp_path / "seed-x").mkdir()
    assert list(_seed_roots(tmp_path)) == [42, 43, 100]  # numeric order; seed-x is no seed
    assert list(_seed_roots(tmp_path, [43])) == [43]
    assert _seed_roots(tmp_path / "flat") == {None: tmp_path / "flat"}
    # notebooks 03/04 run by hand into one folder: its results count, whatever seeds the runner asks for
    flat = tmp_path / "by-hand"
    make_run(flat, {0: GOOD})
    for item in (flat / "seed-0").iterdir():
        item.rename(flat / item.name)
    (flat / "seed-0").rmdir()
    assert _seed_roots(flat, [42]) == {None: flat}
    claims = {c["id"]: c["verdict"] for c in verification.judge(verification.collect(flat, [42]))}
    assert claims["phase1_lens"] == "holds" and claims["phase2_unchanged"] == "holds"
    assert list(_seed_roots(tmp_path / "empty", [42])) == [42]


def test_run_command_reproduces_the_run():
    run = {
        "model": "default",
        "quick": True,
        "settings": {"phase": "verify", "seeds": [7, 8], "thresholds": {"eight_min_score": 6.0}},
    }
    assert (
        report.run_command(run)
        == "workbench run all --model default --seeds 2 --seed 7 --quick --threshold eight_min_score=6"
    )
    assert report.run_command({"model": "m", "settings": {"seeds": [42]}}) == "workbench run all --model m"


def test_threshold_parsing_errors_name_the_fix():
    """(An unknown name is a CLI case: test_runner.py, `workbench run verify --threshold eight=3`.)"""
    assert verification.parse_threshold(" eight_min_score = 7 ") == ("eight_min_score", 7.0)
    with pytest.raises(WorkbenchError, match="not a number"):
        verification.parse_threshold("eight_min_score=many")
    with pytest.raises(WorkbenchError, match="not NAME=VALUE"):
        verification.parse_threshold("eight_min_score")


def test_report_embeds_pngs_when_present_and_names_html_otherwise(tmp_path):
    root = make_run(tmp_path / "run", {42: GOOD})
    layout = RunLayout(root)
    layout.baseline_classifier_figure.with_suffix(".png").write_bytes(b"png")  # a PNG: embedded
    layout.verification_lens_figure.write_text("<html>")  # HTML only: named
    data = verification.collect(root)
    claims = verification.judge(data)
    run = {
        "model": "default",
        "settings": {"phase": "all", "quick": False},
        "git_commit": "abc",
        "phases": {
            "baseline": {"status": "done", "seconds": 3.2, "git_commit": "abc"},
            "phase2.seed-42": {"status": "stale"},
            "verify": {"status": "running", "git_commit": "def"},
        },
    }
    text = report.report_markdown(root, claims, data, verification.thresholds(), run)
    figures = text.split("## Figures")[1].split("## Where")[0]
    assert "![Linear probe accuracy by layer, base model](baseline_classifier.png)" in figures
    assert "`verification_lens.html`" in figures and figures.count("- ") + figures.count("![") == 2  # no missing ones
    assert report.claims_table(claims) in text and "| baseline | done | 3 |" in text
    assert "7 hold, 1 fail, 0 mixed, 0 not measured (1 reported" in text
    assert "**Not every phase is done** (phase2.seed-42 stale;" in text and "verify running" not in text
    assert "git commit: phases at `abc`, `not recorded`; verification at `abc`" in text

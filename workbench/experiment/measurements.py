"""What a run folder measured, as the claims read it: ``collect`` gathers every number the guide's claims need from the
run folder's result files into one dict (None where a file is missing); claims.py judges them. Nothing here loads a
model.

A run folder holds the baseline results at its root and, per training seed, phase 1 and phase 2 in ``seed-<s>/``
(a folder without seed folders is read as one seed).
"""

from __future__ import annotations

from pathlib import Path

from ..core.results import read_result
from ..training.records import GreedyEval, TrainMetrics
from .layout import RunLayout
from .summary import lens_summary, probe_summary


def _load(path: Path, record=None):
    if not path.is_file():
        return None
    return read_result(path) if record is None else record.read(path)


def _probe(result: dict | None) -> dict | None:
    if result is None:
        return None
    return {**probe_summary(result), "accuracy_by_layer": {r["layer"]: r["accuracy"] for r in result["layer_results"]}}


def collect(run_dir: str | Path, seeds: list[int] | None = None) -> dict:
    """Every number the claims need, read from the run folder's result files (None where a file is missing)."""
    run = RunLayout(run_dir)
    base_lens, base_eight = _load(run.baseline_lens), _load(run.baseline_lens_eight)
    out = {
        "run_dir": str(run.root),
        "task": ((_load(run.run_json) or {}).get("settings") or {}).get("task"),
        "task_file": ((_load(run.run_json) or {}).get("settings") or {}).get("task_file"),
        "base_probe": _probe(_load(run.baseline_classifier)),
        "base_lens": None if base_lens is None else lens_summary(base_lens),
        "base_eight": None if base_eight is None else lens_summary(base_eight),
        "seeds": {},
        "causal": _load(run.causal_summary),
        "readouts": _load(run.readouts_summary),
    }
    for seed, files in run.seeds(seeds).items():
        m1, m2 = _load(files.phase1_metrics, TrainMetrics), _load(files.phase2_metrics, TrainMetrics)
        before = None if m1 is None else m1.before
        eight, check = _load(files.phase1_lens_eight), _load(files.phase2_check)
        answers_base = _load(files.phase1_answers_base, GreedyEval)
        greedy_before, greedy_after = (
            _load(files.phase2_greedy_before, GreedyEval),
            _load(files.phase2_greedy_after, GreedyEval),
        )
        out["seeds"][seed] = {
            "folder": str(files.root),
            "phase1_steps": None if m1 is None else m1.steps,
            "phase1_eval_prompts": None if m1 is None else m1.eval_prompts,
            "lens_before": None if before is None else before.lens.mean_correct_target_prob,
            "lens_after": None if m1 is None else m1.after.lens.mean_correct_target_prob,
            "lens_after_per_operation": None if m1 is None else m1.after.lens.per_operation_prob,
            "lens_top1": None if m1 is None else m1.after.lens.top1_score.to_dict(),
            "eight": None if eight is None else lens_summary(eight),
            "phase1_probe": _probe(_load(files.phase1_classifier)),
            "check": None
            if check is None
            else {k: check[k] for k in ("unchanged", "max_abs_diff", "frozen_layers", "frozen_layers_moved", "layer")},
            "lens_phase2": None if m2 is None else m2.after.lens.mean_correct_target_prob,
            "exact_match_base": None if before is None else before.answer_exact_match,
            "exact_match_phase1": None if m1 is None else m1.after.answer_exact_match,
            "exact_match_phase2": None if m2 is None else m2.after.answer_exact_match,
            "greedy_base": None if answers_base is None else answers_base.accuracy,
            "greedy_phase1": None if greedy_before is None else greedy_before.accuracy,
            "greedy_phase2": None if greedy_after is None else greedy_after.accuracy,
            "phase2_steps": None if m2 is None else m2.steps,
        }
    return out

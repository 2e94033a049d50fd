"""Headline numbers and table rows of training runs, read from what they write (``metrics.json``, the
``train_log.jsonl`` rows, greedy evaluations, the lens before and after): the losses smoothed, the held-out lens and
answers before and after, and phase 2's check that the classifier layer did not move. Nothing here needs a model.
"""

from __future__ import annotations

from ..core import guide
from ..core.errors import WorkbenchError
from ..core.guide import OPERATIONS
from ..training.records import Measurement, TrainMetrics

LOSS_KEYS = ("loss", "classifier_loss", "answer_loss")


def rolling_mean(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): batch-size-1 losses are too noisy to read raw."""
    if window < 1:
        raise WorkbenchError(f"rolling window {window} must be at least 1 step")
    return [sum(values[max(0, i + 1 - window) : i + 1]) / min(i + 1, window) for i in range(len(values))]


def ordered_operations(values: dict) -> dict:
    """A per-operation dict in the guide's order (multiply, add, subtract, divide), other keys after them as given."""
    known = [op for op in OPERATIONS if op in values]
    return {op: values[op] for op in known + [k for k in values if k not in OPERATIONS]}


def _lens_side(side: Measurement | None) -> dict:
    if side is None:  # a resumed run has no "before" evaluation
        return {"mean_prob": None, "top1_correct": None, "per_operation": {}, "answer_loss": None, "exact_match": None}
    return {
        "mean_prob": side.lens.mean_correct_target_prob,
        "top1_correct": side.lens.top1_score.correct,
        "per_operation": ordered_operations(side.lens.per_operation_prob),
        "answer_loss": side.answer_loss,
        "exact_match": side.answer_exact_match,
    }


def training_summary(metrics: dict, log_rows: list[dict] | None = None, window: int = 25) -> dict:
    """Headline numbers of one training run: held-out lens and answer metrics before and after (from metrics.json),
    and, given the train_log rows, each loss's rolling mean over the first and the last ``window`` steps."""
    m = TrainMetrics.from_dict(metrics)
    before, after = _lens_side(m.before), _lens_side(m.after)
    per_op = after["per_operation"]
    out = {
        "model": m.model,
        "layer": m.after.lens.layer,
        "steps": m.steps,
        "eval_prompts": m.eval_prompts,
        "top1_total": m.after.lens.top1_score.total,
        **{f"before_{k}": v for k, v in before.items()},
        **{f"after_{k}": v for k, v in after.items()},
        "after_weakest_operation": min(per_op, key=per_op.get) if per_op else None,
        "after_strongest_operation": max(per_op, key=per_op.get) if per_op else None,
    }
    for side in ("before", "after"):
        p = out[f"{side}_mean_prob"]
        out[f"{side}_mean_percent"] = None if p is None else 100 * p
    if log_rows:
        out["logged_steps"] = len(log_rows)
        out["train_seconds"] = sum(r.get("seconds", 0.0) for r in log_rows)
        out["window"] = min(window, len(log_rows))
        for key in LOSS_KEYS:
            if all(key in r for r in log_rows):
                smooth = rolling_mean([r[key] for r in log_rows], window)
                out[f"{key}_start"] = smooth[out["window"] - 1]
                out[f"{key}_end"] = smooth[-1]
    return out


def metrics_rows(metrics: dict) -> list[dict]:
    """metrics.json as a before/after table: the lens at its layer (mean, top-1, each operation) and the answers."""
    m = TrainMetrics.from_dict(metrics)
    layer = m.after.lens.layer
    before, after = _lens_side(m.before), _lens_side(m.after)
    total = m.after.lens.top1_score.total
    rows = [
        {
            "metric": f"mean correct-target probability (lens, L{layer})",
            "before": before["mean_prob"],
            "after": after["mean_prob"],
        },
        {
            "metric": f"top-1 is the target (lens, L{layer}, of {total})",
            "before": before["top1_correct"],
            "after": after["top1_correct"],
        },
    ]
    rows += [
        {"metric": f"p({op}) on {op} prompts (lens, L{layer})", "before": before["per_operation"].get(op), "after": p}
        for op, p in after["per_operation"].items()
    ]
    rows += [
        {
            "metric": "answer loss (CE on response tokens)",
            "before": before["answer_loss"],
            "after": after["answer_loss"],
        },
        {
            "metric": "answer exact match (teacher-forced argmax)",
            "before": before["exact_match"],
            "after": after["exact_match"],
        },
    ]
    return rows


def lens_change(before: dict, after: dict) -> dict:
    """How much two logit-lens results on the same prompts and layer differ: the largest absolute change of any target
    probability (and of each prompt's expected target and top-1 probability), and how many top tokens stayed."""
    prompts = [r["prompt"] for r in before["results"]]
    if prompts != [r["prompt"] for r in after["results"]]:
        raise WorkbenchError(
            "the two lens results read different prompts: compare results made on the same prompt list"
        )
    if before["layer"] != after["layer"]:
        raise WorkbenchError(
            f"the lens results are at layers {before['layer']} and {after['layer']}: compare the same layer"
        )
    pairs = list(zip(before["results"], after["results"]))
    return {
        "layer": before["layer"],
        "n_prompts": len(pairs),
        "max_abs_diff_target_prob": max(
            abs(a["target_probs"][w] - b["target_probs"][w]) for b, a in pairs for w in b["target_probs"]
        ),
        "max_abs_diff_expected_prob": max(
            (
                abs(a["target_probs"][b["expected"]] - b["target_probs"][b["expected"]])
                for b, a in pairs
                if b["expected"] is not None
            ),
            default=None,
        ),
        "max_abs_diff_top_prob": max(abs(a["top_prob"] - b["top_prob"]) for b, a in pairs),
        "same_top_token": sum(a["top_token_id"] == b["top_token_id"] for b, a in pairs),
        "before_mean_expected_prob": before.get("mean_expected_prob"),
        "after_mean_expected_prob": after.get("mean_expected_prob"),
    }


def greedy_rows(before: dict, after: dict) -> list[dict]:
    """Two greedy evaluations of the same prompts side by side (completions shown as repr, so whitespace stays visible)."""
    if [r["prompt"] for r in before["rows"]] != [r["prompt"] for r in after["rows"]]:
        raise WorkbenchError("the two greedy evaluations answer different prompts: run both on the same records")
    return [
        {
            "prompt": b["prompt"],
            "answer": b["response"],
            "before": repr(b["greedy"]),
            "before correct": b["correct"],
            "after": repr(a["greedy"]),
            "after correct": a["correct"],
        }
        for b, a in zip(before["rows"], after["rows"])
    ]


def metrics_lens_change(metrics: dict) -> dict:
    """The largest absolute before/after difference of the held-out lens numbers in metrics.json (mean correct-target
    probability and each operation's); 0.0 when the layer the lens reads could not have changed."""
    m = TrainMetrics.from_dict(metrics)
    before, after = m.before.lens, m.after.lens
    per_op = {op: abs(p - before.per_operation_prob[op]) for op, p in after.per_operation_prob.items()}
    change = abs(after.mean_correct_target_prob - before.mean_correct_target_prob)
    return {
        "layer": after.layer,
        "max_abs_diff_mean_prob": change,
        "max_abs_diff_per_operation": per_op,
        "max_abs_diff": max([change, *per_op.values()]),
        "same_top1_correct": after.top1_score.correct == before.top1_score.correct,
    }


def classifier_check(
    readout_change: dict,
    metrics_change: dict,
    adapter_changes: list[dict],
    frozen: list[int],
    tolerance: float = guide.THRESHOLDS["phase2_tolerance"],
) -> dict:
    """Phase 2's promise, checked three ways: the per-prompt lens readout (a ``lens_change`` result), the means in
    metrics.json (a ``metrics_lens_change`` result) and the LoRA weights of the frozen layers (``adapter_layer_changes``
    rows). ``unchanged`` when both lens differences are within ``tolerance`` and no frozen layer's weights moved at all."""
    frozen_moved = [r["layer"] for r in adapter_changes if r["layer"] in set(frozen) and r["max_abs_change"] != 0.0]
    largest = max(readout_change["max_abs_diff_target_prob"], metrics_change["max_abs_diff"])
    return {
        "layer": readout_change["layer"],
        "tolerance": tolerance,
        "frozen_layers": list(frozen),
        "unchanged": largest <= tolerance and not frozen_moved,
        "max_abs_diff": largest,
        "frozen_layers_moved": frozen_moved,
        "still_layers": [r["layer"] for r in adapter_changes if r["max_abs_change"] == 0.0],
        "moved_layers": [r["layer"] for r in adapter_changes if r["max_abs_change"] != 0.0],
        "max_weight_change": max((r["max_abs_change"] for r in adapter_changes), default=0.0),
        "lens_change": readout_change,
        "metrics_lens_change": metrics_change,
        "adapter_layer_changes": adapter_changes,
    }

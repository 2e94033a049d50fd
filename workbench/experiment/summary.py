"""Headline numbers and table rows read from result dicts (the dicts the JSON files hold).

Notebooks' closing cells and reports build their prose from these, so no measured number is ever typed by hand.
Rows are plain dicts (one per prompt), ready for ``pandas.DataFrame(rows)``; nothing here needs a model.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

from ..core import guide, stats
from ..core.errors import WorkbenchError
from ..core.guide import OPERATIONS
from ..core.layers import layer_spans
from ..tasks.source import source_of
from ..tasks.spec import Nouns, load_task, task_nouns
from ..training.records import Measurement, TrainMetrics


def _classifier_layer(result: dict, layer: int | None) -> int:
    if layer is not None:
        return int(layer)
    if "classifier_layer_default" in result:
        return int(result["classifier_layer_default"])
    if "layer" in result:
        return int(result["layer"])
    raise WorkbenchError("result has no classifier layer: pass layer=")


def _layer_row(result: dict, layer: int) -> dict:
    for row in result["layer_results"]:
        if row["layer"] == layer:
            return row
    probed = [r["layer"] for r in result["layer_results"]]
    raise WorkbenchError(f"layer {layer} was not probed (probed: {probed}): rerun the probe with that layer included")


def _expected_class(task: str | None) -> Callable[[str], str | None]:
    """The expected class of a prompt, as the source of the task a result names reads it (None: the guide's
    arithmetic); a task file that is no longer there reads none."""
    try:
        return source_of(load_task(task)).expected_class
    except WorkbenchError:
        return lambda prompt: None


def probe_test_rows(result: dict, layer: int | None = None) -> list[dict]:
    """The test prompts' predictions at one layer (default: the classifier layer), one row per prompt.

    ``expected`` is the class the prompt names as its task's source reads it (arithmetic: the operation its operator
    names; an examples task: none), None when it names none of the probe's classes.
    """
    layer = _classifier_layer(result, layer)
    classes = result["classes"]
    expected_class = _expected_class((result.get("settings") or {}).get("task"))
    rows = []
    for t in result["test_predictions"]:
        if t["layer"] != layer:
            continue
        expected = expected_class(t["prompt"])
        expected = expected if expected in classes else None
        rows.append(
            {
                "prompt": t["prompt"],
                "expected": expected,
                "predicted": t["predicted"],
                "p(predicted)": t["probabilities"][t["predicted"]],
                "correct": None if expected is None else t["predicted"] == expected,
                **{f"p({c})": t["probabilities"][c] for c in classes},
            }
        )
    return rows


def probe_summary(result: dict, layer: int | None = None) -> dict:
    """Headline numbers of a classifier-probe result, at ``layer`` (default: the classifier layer) and over layers."""
    layer = _classifier_layer(result, layer)
    rows = result["layer_results"]
    at = _layer_row(result, layer)
    perfect = [r["layer"] for r in rows if r["accuracy"] >= 1.0]
    most_selective = max(rows, key=lambda r: (r["selectivity"], -r["layer"]))
    tests = [r for r in probe_test_rows(result, layer) if r["correct"] is not None]
    return {
        "model": result.get("model"),
        "num_layers": result.get("num_layers", len(rows)),
        "layers_probed": len(rows),
        "classes": list(result["classes"]),
        "chance": 1 / len(result["classes"]),
        "folds": result.get("folds"),
        "layer": layer,
        "accuracy": at["accuracy"],
        "std": at["std"],
        "control_accuracy": at["control_accuracy"],
        "selectivity": at["selectivity"],
        "best_layer": result["best_layer"],
        "best_accuracy": result["best_accuracy"],
        "layers_at_100": perfect,
        "n_layers_at_100": len(perfect),
        "first_layer_at_100": perfect[0] if perfect else None,
        "min_accuracy": min(r["accuracy"] for r in rows),
        "min_accuracy_layer": min(rows, key=lambda r: (r["accuracy"], r["layer"]))["layer"],
        "mean_control_accuracy": sum(r["control_accuracy"] for r in rows) / len(rows),
        "max_control_accuracy": max(r["control_accuracy"] for r in rows),
        "max_selectivity": most_selective["selectivity"],
        "max_selectivity_layer": most_selective["layer"],
        "test_correct": sum(bool(r["correct"]) for r in tests),
        "test_total": len(tests),
    }


def lens_rows(result: dict) -> list[dict]:
    """One row per prompt of a logit-lens result: top token, and each target's probability and rank.

    The top token is given as its Python repr, so that whitespace tokens such as ``' '`` stay visible in a table.
    """
    words = list(result["target_token_ids"])
    return [
        {
            "prompt": r["prompt"],
            "expected": r["expected"],
            "top token": repr(r["top_token"]),
            "p(top)": r["top_prob"],
            "top-1 is expected": r["correct"],
            **{f"p({w})": r["target_probs"][w] for w in words},
            **{f"rank({w})": r["target_ranks"][w] for w in words},
        }
        for r in result["results"]
    ]


def lens_summary(result: dict) -> dict:
    """Headline numbers of a logit-lens result at its layer (and over layers when it has an ``all_layers`` block).

    Probabilities are also given x 100 (``*_percent``), the unit of the guide's "0%" and "36-81%".
    """
    scored = [r for r in result["results"] if r["expected"] is not None]
    # Among the targets only: which word does the lens rank highest for each prompt (ties -> the first target)?
    best_target = [max(r["target_probs"], key=r["target_probs"].get) for r in result["results"]]
    expected_ranks = [r["target_ranks"][r["expected"]] for r in scored]
    target_probs = [p for r in result["results"] for p in r["target_probs"].values()]
    mean_expected = result.get("mean_expected_prob")
    out = {
        "model": result.get("model"),
        "layer": result["layer"],
        "num_layers": result["num_layers"],
        "n_prompts": len(result["results"]),
        "score_correct": result["score"]["correct"],
        "score_total": result["score"]["total"],
        "mean_expected_prob": mean_expected,
        "mean_expected_percent": None if mean_expected is None else 100 * mean_expected,
        "max_target_prob": max(target_probs),
        "max_target_percent": 100 * max(target_probs),
        "best_expected_rank": min(expected_ranks) if expected_ranks else None,
        "median_expected_rank": median(expected_ranks) if expected_ranks else None,
        "best_target_counts": {w: best_target.count(w) for w in result["target_token_ids"]},
        "best_target_is_expected": sum(
            b == r["expected"] for b, r in zip(best_target, result["results"]) if r["expected"]
        ),
        "top_tokens": list(dict.fromkeys(r["top_token"] for r in result["results"])),
        "mean_top_prob": sum(r["top_prob"] for r in result["results"]) / len(result["results"]),
        "multi_token_targets": {t["word"]: t["token"] for t in result["targets"] if t["n_subtokens"] > 1},
    }
    grid = result.get("all_layers")
    if grid:
        by_layer = grid["mean_expected_prob"]
        peak = max(range(len(by_layer)), key=lambda i: (by_layer[i], -i))
        out.update(
            {
                "all_layers": len(grid["layers"]),
                "peak_layer": grid["layers"][peak],
                "peak_mean_expected_prob": by_layer[peak],
                "peak_mean_expected_percent": 100 * by_layer[peak],
                "max_expected_prob_any_layer": max(
                    grid["target_probs"][r["expected"]][li][i]
                    for i, r in enumerate(result["results"])
                    if r["expected"] is not None
                    for li in range(len(grid["layers"]))
                )
                if scored
                else None,
            }
        )
    return out


def layer_ranges(layers: list[int]) -> str:
    """Sorted layer indices as compact ranges: [10, 11, 12, 29] -> "L10-L12, L29" ("" for none)."""
    return ", ".join(f"L{a}" if a == b else f"L{a}-L{b}" for a, b in layer_spans(layers))


# ---------------------------------------------------------------- training runs (train_log.jsonl rows, metrics.json)

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


def fmt_prob(p: float | None) -> str:
    """A probability for prose: a percentage from 1% up, with two decimals from 99% up so that near-certainty stays
    visible ("42.3%", "99.94%"), scientific below 1% ("3.2e-09"), "n/a" for None."""
    if p is None:
        return "n/a"
    if p >= 0.99:
        return f"{p:.2%}"
    return f"{p:.1%}" if p >= 0.01 else f"{p:.1e}"


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


def expected_prob_range(result: dict) -> dict:
    """The lowest and highest expected-target lens probability over a logit-lens result's scored prompts (the guide's
    "36-81%" is such a range, x 100), with the prompts that reach them."""
    scored = [(r["target_probs"][r["expected"]], r["prompt"]) for r in result["results"] if r["expected"] is not None]
    if not scored:
        raise WorkbenchError(
            "no prompt of this lens result has an expected target: pass expected= or arithmetic prompts"
        )
    (low, low_prompt), (high, high_prompt) = min(scored), max(scored)
    return {"min": low, "max": high, "min_prompt": low_prompt, "max_prompt": high_prompt, "n": len(scored)}


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


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """``v`` for one value; ``mean ± std [min, max]`` over seeds for several (``core.stats.spread``)."""
    return stats.spread(stats.over_seeds(values), fmt)


def pct(p: float) -> str:
    """A probability in the guide's unit (x 100), with enough digits that tiny values do not read as 0."""
    value = 100 * p
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.1f}%"
    return f"{value:.1e}%"


def classifier_layer_rule(layer: int, n_layers: int, sep: str = ", ") -> str:
    """``", the guide's int(0.55 × 30) rule"`` when ``layer`` is the one the guide's depth rule picks, else ""."""
    if layer != guide.classifier_layer(n_layers):
        return ""
    return f"{sep}the guide's int({guide.CLASSIFIER_DEPTH} × {n_layers}) rule"


def nouns_for(task: str | None) -> Nouns:
    """The nouns of the task a result names (a built-in task's name or a task file; None: the guide's arithmetic); a
    task file that is no longer there gives the defaults."""
    try:
        return task_nouns(task)
    except WorkbenchError:
        return Nouns()

"""Headline numbers and table rows of the baseline's results: the classifier probe and the logit lens, read from
result dicts (the dicts the JSON files hold).

Notebooks' closing cells and reports build their prose from these, so no measured number is ever typed by hand.
Rows are plain dicts (one per prompt), ready for ``pandas.DataFrame(rows)``; nothing here needs a model.

The notebooks call every helper as ``summary.X``: the training runs' numbers (``training_results``) and the prose
helpers (``prose``) are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

from ..core.errors import WorkbenchError
from ..tasks.source import source_of
from ..tasks.spec import load_task
from .prose import classifier_layer_rule, fmt_prob, layer_ranges, nouns_for, pct, spread
from .training_results import (
    LOSS_KEYS,
    classifier_check,
    greedy_rows,
    lens_change,
    metrics_lens_change,
    metrics_rows,
    ordered_operations,
    rolling_mean,
    training_summary,
)

__all__ = [
    # probe and lens results (here)
    "expected_prob_range",
    "lens_rows",
    "lens_summary",
    "probe_summary",
    "probe_test_rows",
    # training runs (training_results)
    "LOSS_KEYS",
    "classifier_check",
    "greedy_rows",
    "lens_change",
    "metrics_lens_change",
    "metrics_rows",
    "ordered_operations",
    "rolling_mean",
    "training_summary",
    # prose (prose)
    "classifier_layer_rule",
    "fmt_prob",
    "layer_ranges",
    "nouns_for",
    "pct",
    "spread",
]


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

"""The cross-task, cross-model table: one row per run folder (a task on a model), every number read from its result
files. `workbench table RUN...` prints it; docs/results.md publishes it."""

from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

from ..core.results import read_result
from .claims import collect
from .layout import RunLayout

COLUMNS = (
    "task",
    "model",
    "probe best layer (accuracy)",
    "probe at classifier layer",
    "bag-of-tokens",
    "base lens p(class word)",
    "trained lens p(class word), held out",
    "trained lens, out of distribution",
    "answer accuracy base → phase 1 → phase 2",
    "seeds",
)


def _mean_std(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    if len(got) == 1:
        return f"{got[0]:.3f}"
    return f"{mean(got):.3f} ± {stdev(got):.3f}"


def _tiny(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    return f"{mean(got):.1e}" if got else "—"


def task_row(run_dir: str | Path) -> dict:
    """One run folder's numbers: the base probe and its bag-of-tokens baseline, the lens at the classifier layer on
    held-out prompts before and after phase 1 (and out of distribution), and the answers through the phases."""
    layout = RunLayout(run_dir)
    run = read_result(layout.run_json) if layout.run_json.is_file() else {}
    data = collect(layout.root)
    seeds = list(data["seeds"].values())
    probe = read_result(layout.baseline_classifier) if layout.baseline_classifier.is_file() else None
    base = data["base_probe"]
    ood = [
        read_result(files.phase1_lens_ood)["mean_expected_prob"]
        for files in layout.seeds().values()
        if files.phase1_lens_ood.is_file()
    ]
    answers = [_mean_std([d[k] for d in seeds]) for k in ("greedy_base", "greedy_phase1", "greedy_phase2")]
    return {
        "task": (run.get("settings") or {}).get("task") or "arithmetic",
        "model": run.get("model", "?"),
        "probe best layer (accuracy)": f"L{base['best_layer']} ({base['best_accuracy']:.3f})" if base else "—",
        "probe at classifier layer": f"L{base['layer']}: {base['accuracy']:.3f}" if base else "—",
        "bag-of-tokens": f"{probe['bag_of_tokens']['accuracy']:.3f}" if probe and "bag_of_tokens" in probe else "—",
        "base lens p(class word)": _tiny([d["lens_before"] for d in seeds]),
        "trained lens p(class word), held out": _mean_std([d["lens_after"] for d in seeds]),
        "trained lens, out of distribution": _mean_std(ood) if ood else "—",
        "answer accuracy base → phase 1 → phase 2": " → ".join(answers),
        "seeds": str(len([d for d in seeds if d["lens_after"] is not None])),
        "quick": bool(run.get("quick")),
    }


def cross_task_table(run_dirs: list[str | Path]) -> str:
    """The rows of several run folders as one markdown table (a --quick run is marked)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for run_dir in run_dirs:
        row = task_row(run_dir)
        cells = [row[c] + (" (quick)" if c == "task" and row["quick"] else "") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""The cross-task, cross-model table: one row per run folder (a task on a model), every number read from its result
files. `workbench table RUN...` prints it; `workbench publish` keeps its rows as a record and renders the page."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from ..core.results import read_result
from ..core.stats import mean_std, over_seeds
from .claims import collect
from .layout import RunLayout
from .report import run_command

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
    return mean_std(over_seeds(values))


def _tiny(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    return f"{mean(got):.1e}" if got else "—"


def task_row(run_dir: str | Path) -> dict:
    """One run folder's numbers: the base probe and its bag-of-tokens baseline, the lens at the classifier layer on
    held-out prompts before and after phase 1 (and out of distribution), and the answers through the phases."""
    layout = RunLayout(run_dir)
    run = layout.read_run()
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
        "probe_gap": None
        if not probe or "bag_of_tokens" not in probe or not base
        else base["best_accuracy"] - probe["bag_of_tokens"]["accuracy"],
        "verdicts": _verdicts(layout),
        "command": run_command(run) if run else None,
        "phase_seconds": {k: p.get("seconds") for k, p in (run.get("phases") or {}).items()},
        "git_commit": run.get("git_commit"),
    }


def _verdicts(layout: RunLayout) -> dict[str, str]:
    if not layout.claims.is_file():
        return {}
    return {c["id"]: c["verdict"] for c in layout.read_claims()["claims"]}


def cross_task_table(rows: list[dict]) -> str:
    """``task_row`` rows as one markdown table (a --quick run is marked)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row[c] + (" (quick)" if c == "task" and row["quick"] else "") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CLAIMS = (  # claim id -> how the paragraph names it
    (
        "base_probe_classifier_layer",
        "a linear probe reads the class at the classifier layer (accuracy 1, selectivity 0.5)",
    ),
    ("base_lens", "the base model's lens does not read the class word there (below 0.5%)"),
    ("phase1_lens", "dual-reward V/O training makes the lens read it (at least 36% on held-out prompts)"),
    ("phase1_eight", "eight held-out prompts read correctly at top-1 after training"),
    ("phase1_probe", "the probe still reads the class at the classifier layer after training (accuracy 1)"),
    ("phase2_unchanged", "routing training leaves the frozen classifier unchanged"),
    ("phase2_answers", "routing training improves the answers"),
)


def _label(row: dict) -> str:
    return f"{row['task']} on {row['model']}"


def generalisation(rows: list[dict]) -> str:
    """Which of the guide's claims hold on which task and model, from each run's claims.json, and where the probe
    stands against the bag-of-tokens baseline."""
    text = []
    for claim_id, words in CLAIMS:
        judged = [(r, r["verdicts"].get(claim_id)) for r in rows if r["verdicts"].get(claim_id)]
        if not judged:
            continue
        holds = [_label(r) for r, v in judged if v == "holds"]
        other = [f"{_label(r)} ({v})" for r, v in judged if v != "holds"]
        text.append(
            f"*{words[0].upper() + words[1:]}*: holds for {', '.join(holds) or 'none'}"
            + (f"; not for {', '.join(other)}" if other else "")
            + "."
        )
    gaps = [(r, r["probe_gap"]) for r in rows if r["probe_gap"] is not None]
    if gaps:
        text.append(
            "*The probe against the prompt's surface* (best probe accuracy minus the bag-of-tokens baseline): "
            + ", ".join(f"{_label(r)} {g:+.2f}" for r, g in gaps)
            + "."
        )
    return " ".join(text)


def page_text(rows: list[dict], notes: list[str] | None = None) -> str:
    """The cross-task section of docs/results.md from ``task_row`` rows: the table, the command and phase time behind
    each row, the ``notes`` (what the folders cannot say: a run that shared the machine, a row from elsewhere), and
    the paragraph on what generalises."""
    lines = ["## Beyond arithmetic: tasks and models", "", cross_task_table(rows), ""]
    lines += ["Each row is one run folder, made by:", ""]
    for row in rows:
        seconds = sum(v for v in row["phase_seconds"].values() if isinstance(v, (int, float)))
        at = f", git commit `{row['git_commit']}`" if row.get("git_commit") else ""
        lines.append(f"- {_label(row)}: `{row['command']}` ({seconds / 60:.1f} min of phases{at})")
    for note in notes or []:
        lines += ["", f"Note: {note}"]
    lines += ["", "**What generalises.** " + generalisation(rows)]
    return "\n".join(lines) + "\n"

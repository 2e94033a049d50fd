"""The claims as markdown: numbers formatted in the guide's units, the claims table, and the run's report.md."""

from __future__ import annotations

from pathlib import Path

from ..core.guide import THRESHOLD_HELP
from ..tasks.spec import BUILTIN_DIR
from .claims import VERDICTS
from .layout import RunLayout
from .phases import DEFAULT_SEED


def claims_table(claims: list[dict]) -> str:
    """The claims as a markdown table."""
    lines = ["| claim | the guide | measured here | verdict | threshold |", "|---|---|---|---|---|"]
    for c in claims:
        cells = [c["claim"], c["guide"], c["measured"], f"**{c['verdict']}**", c["threshold"]]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def commits(run: dict) -> str:
    """The commit(s) the phases ran at, and the verifying one when it differs."""
    ran = {k: p.get("git_commit") for k, p in (run.get("phases") or {}).items() if not k.startswith("verify")}
    at = sorted({c or "not recorded" for c in ran.values()})
    verified = run.get("git_commit")
    if not at or at == [verified]:
        return f"`{verified}`"
    return "phases at " + ", ".join(f"`{c}`" for c in at) + f"; verification at `{verified}`"


def run_command(run: dict) -> str:
    """The `workbench run` line that makes this run folder's results again (from its run.json)."""
    settings = run.get("settings") or {}
    seeds = settings.get("seeds") or []
    parts = ["workbench run all", f"--model {run.get('model', 'default')}"]
    if settings.get("task"):
        file = settings.get("task_file")
        builtin = file and Path(file).parts[-3:-1] == BUILTIN_DIR.parts[-2:]  # a built-in task, in any checkout
        parts.append(f"--task {settings['task'] if builtin or not file else file}")
    if len(seeds) > 1:
        parts.append(f"--seeds {len(seeds)}")
    if seeds and seeds[0] != DEFAULT_SEED:
        parts.append(f"--seed {seeds[0]}")
    if run.get("quick"):
        parts.append("--quick")
    parts += [f"--threshold {k}={v:g}" for k, v in (settings.get("thresholds") or {}).items()]
    return " ".join(parts)


def _figure_line(run_dir: Path, title: str, figure: Path) -> str | None:
    html = figure.relative_to(run_dir).as_posix()
    png = Path(html).with_suffix(".png").as_posix()
    if (run_dir / png).is_file():
        return f"![{title}]({png})"
    if figure.is_file():
        return f"- {title}: `{html}` (interactive HTML in the run folder; no Chromium was found for a PNG)"
    return None


def figure_lines(run_dir: str | Path, seeds: list) -> list[str]:
    """The report's figure lines for a run folder: the figures the layout names (``RunLayout.report_figures``, the
    seeded ones from the first seed's folder), each PNG embedded when there is one."""
    run_dir = Path(run_dir)
    figures = RunLayout(run_dir).report_figures(next(iter(seeds), None))
    return [line for title, figure in figures if (line := _figure_line(run_dir, title, figure))]


def report_markdown(run_dir: str | Path, claims: list[dict], data: dict, limits: dict, run: dict | None) -> str:
    """The run's ``report.md`` (``report_text`` with the run folder's figures)."""
    return report_text(claims, list(data["seeds"]), limits, run, figure_lines(run_dir, list(data["seeds"])))


def report_text(claims: list[dict], seeds: list, limits: dict, run: dict | None, figures: list[str]) -> str:
    """A report: what was run, the claims table, the thresholds, the phase times and the ``figures`` lines."""
    run = run or {}
    seeds = [s for s in seeds if s is not None]
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    lines = ["# Classifier-emergence experiment: results", ""]
    lines += [
        f"- model: `{run.get('model', '?')}`; task: {(run.get('settings') or {}).get('task') or 'arithmetic'}; "
        f"training seeds: {', '.join(map(str, seeds)) or 'one (no seed folders)'}",
        f"- command: `{run_command(run)}`" if run else "- command: notebooks run by hand (no run.json)",
        f"- git commit: {commits(run)}; verified {run.get('updated', '?')}",
    ]
    env = (run.get("environment") or {}).get("libraries") or {}
    if env:
        lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in env.items() if v))
    unfinished = {
        k: p.get("status")
        for k, p in (run.get("phases") or {}).items()
        if p.get("status") != "done" and not k.startswith("verify")
    }
    if unfinished:
        lines += [
            "",
            "**Not every phase is done** ("
            + ", ".join(f"{k} {v}" for k, v in unfinished.items())
            + "; `stale` means an earlier phase was redone after it): some numbers below may be missing or out of "
            "date until `workbench run all` finishes.",
        ]
    if run.get("quick"):
        lines += [
            "",
            "**This is a `--quick` run (4 training steps on 64 records): its numbers test the machinery, "
            "not the guide's claims.**",
        ]
    lines += [
        "",
        "## Claims",
        "",
        f"{counts['holds']} hold, {counts['fails']} fail, {counts['mixed']} mixed, {counts['not measured']} not "
        f"measured ({counts['reported']} reported without a claim). Probabilities are given as percentages, the "
        "guide's unit.",
        "",
        claims_table(claims),
        "",
        "## Thresholds",
        "",
        "| name | value | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {value:g} | {THRESHOLD_HELP[name]} |" for name, value in limits.items()]
    phases = {k: p for k, p in (run.get("phases") or {}).items() if not k.startswith("verify")}  # this one is running
    if phases:
        lines += ["", "## Phases", "", "| phase | status | seconds |", "|---|---|---|"]
        lines += [f"| {name} | {p.get('status')} | {p.get('seconds') or 0:.0f} |" for name, p in phases.items()]
    if figures:
        lines += ["", "## Figures", ""]
        for line in figures:
            lines += [line, ""]
    lines += [
        "## Where the numbers come from",
        "",
        "Every number above is read from the run folder's result files by `notebooks/05_verification.ipynb` "
        "(`workbench.experiment.claims`): "
        + ", ".join(sorted({f"`{c['source']}`" for c in claims}))
        + ". `claims.json` "
        "holds the claims, the thresholds and every measurement they use.",
    ]
    return "\n".join(lines).rstrip() + "\n"

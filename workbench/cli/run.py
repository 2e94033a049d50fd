"""`workbench run`, `workbench publish` and `workbench table`: the experiment's phases and their pages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import WorkbenchError
from ._app import TaskOpt, app, flag, option
from .formatters import claims_summary, run_summary


@app.command("run")
def run_cmd(
    phase: Annotated[
        str,
        typer.Argument(
            help="all (generate, baseline, phase1, phase2, verify) | one of them | compare | causal | route | readouts"
        ),
    ] = "all",
    out: option(Path, "--out", help="run folder: executed notebooks, results, figures, run.json") = Path(
        "runs/experiment"
    ),
    model: flag(
        str, "--model", "-m", help="default | local HF dir | file.gguf | hub id (default: the folder's, else default)"
    ) = None,
    quick: option(bool, "--quick", help="tiny data and training (64 records, 32 held out, 4 steps)") = False,
    force: option(bool, "--force", help="rerun phases that are done already") = False,
    seed: flag(int, "--seed", help="data seed and first training seed (default: 42; baseline: its own)") = None,
    seeds: flag(
        int,
        "--seeds",
        help="training seeds: phase1 and phase2 run once per seed, into seed-<s>/ (default: the folder's, else 1)",
    ) = None,
    strict: option(bool, "--strict", help="exit 1 unless every claim of the guide holds (needs verify)") = False,
    threshold: option(
        Optional[list[str]], "--threshold", help="NAME=VALUE: a verification threshold (repeatable)"
    ) = None,
    task: TaskOpt = None,
):
    """Run the experiment's phases as papermill-executed notebooks into one run folder; done phases are skipped."""
    from ..experiment.claims import failures, parse_threshold
    from ..experiment.engine import run
    from ..experiment.layout import RunLayout
    from ..experiment.phases import phase_names

    limits = dict(parse_threshold(t) for t in threshold or [])
    if strict and "verify" not in phase_names(phase):
        raise WorkbenchError(
            f"--strict judges the claims, but phase {phase!r} does not verify: use `workbench run all` or `workbench run verify`"
        )
    doc = run(phase, out, model=model, quick=quick, force=force, seed=seed, seeds=seeds, thresholds=limits, task=task)
    layout = RunLayout(out)
    print(run_summary(out, doc["phases"], layout.run_json))
    if "verify" in phase_names(phase):
        claims = layout.read_claims()["claims"]
        failed = failures(claims)
        print(claims_summary(claims, failed, layout.report))
        if strict and failed:
            print("error: --strict: " + "; ".join(f"{c['id']} {c['verdict']}" for c in failed), file=sys.stderr)
            raise typer.Exit(1)


@app.command("publish")
def publish_cmd(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="verified run folders: first a full run of the guide's task, then any task or model runs"),
    ],
    root: option(Path, "--root", help="the repository: README.md and docs/ are written there") = Path("."),
    note: option(
        Optional[list[str]], "--note", help="a sentence under the cross-task table (repeatable; default: the ones kept)"
    ) = None,
    study: option(
        Optional[Path], "--study", help="a finished study file: its jobs' times and table into docs/studies.md"
    ) = None,
    readouts: option(
        Optional[list[Path]],
        "--readouts",
        help="a `workbench introspect readouts` result (repeatable): docs/readouts.md",
    ) = None,
):
    """Copy the runs' result records into docs/records/ (with figures and executed notebooks) and render every
    generated block of the README and docs from them."""
    from ..experiment.publish import publish
    from ..study.report import study_record

    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            raise WorkbenchError(
                f"{str(run_dir)!r} is not a run folder (no run.json): pass folders `workbench run` wrote"
            )
    from ..experiment.engine import git_commit
    from ..experiment.readouts_page import readouts_record

    extra = {"study.json": study_record(study)} if study else {}
    if readouts:
        extra["readouts.json"] = readouts_record(readouts, git_commit())
    written = publish(run_dirs, root, note, extra)
    print(f"wrote {len(written)} files: " + ", ".join(map(str, written[:8])) + (" ..." if len(written) > 8 else ""))


@app.command("table")
def table_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders, one per task and model")],
    output: flag(Path, "--output", "-o", help="also write the markdown table to this file") = None,
):
    """The cross-task table: probe, bag-of-tokens baseline, lens before/after training, answers, per run folder
    (`workbench publish` puts it into docs/results.md)."""
    from ..core.results import atomic_write_text, check_writable
    from ..experiment.crosstask import cross_task_table, task_row

    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            raise WorkbenchError(
                f"{str(run_dir)!r} is not a run folder (no run.json): pass folders `workbench run` wrote"
            )
    if output:
        check_writable(output)
    table = cross_task_table([task_row(d) for d in run_dirs])
    print(table, end="")
    if output:
        atomic_write_text(output, table)
        print(f"wrote {output}")

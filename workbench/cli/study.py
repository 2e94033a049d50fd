"""`workbench study run|status|table`: models × tasks × seeds × phases from one study file (``workbench.study``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app

study_app = typer.Typer(no_args_is_help=True, help="Studies: many run folders from one study file, on SLURM or here.")
app.add_typer(study_app, name="study")
StudyArg = Annotated[Path, typer.Argument(help="the study YAML file (models, tasks, seeds, phases, executor)")]


@study_app.command("run")
def study_run(
    study: StudyArg,
    resume: Annotated[bool, typer.Option("--resume", help="submit only what is missing from the study folder")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="slurm: wait for every job (inline and local always wait)")
    ] = False,
):
    """Submit every job the study needs (each after the jobs it reads from) and, with --wait, wait for them."""
    from tqdm import tqdm

    from ..study.driver import run_study
    from ..study.jobs import study_jobs
    from ..study.spec import load_study
    from ..study.status import status_table

    total = len(study_jobs(load_study(study)))
    with tqdm(total=total, desc="jobs finished", unit="job", disable=None) as bar:
        rows = run_study(study, resume=resume, wait=wait, echo=tqdm.write, progress=bar.update)
    print(status_table(rows), end="")
    failed = [r for r in rows if r["status"] in ("failed", "not run", "cancelled")]
    if failed:
        raise typer.Exit(1)


@study_app.command("status")
def study_status(study: StudyArg):
    """Each job: queued, running, done, failed or not run (and why), its scheduler id and the time it took."""
    from ..study.driver import status_text

    print(status_text(study), end="")


@study_app.command("table")
def study_table(study: StudyArg):
    """The cross-task table over the study's finished run folders (also written to the study folder's table.md)."""
    from ..core.errors import WorkbenchError
    from ..study.driver import write_table
    from ..study.jobs import study_jobs
    from ..study.spec import load_study

    spec = load_study(study)
    path = write_table(Path(spec.out).resolve(), study_jobs(spec))
    if path is None:
        raise WorkbenchError(
            f"no run folder of {study} has all its jobs done yet: see `workbench study status {study}`"
        )
    print(path.read_text(encoding="utf-8"), end="")
    print(f"wrote {path}")

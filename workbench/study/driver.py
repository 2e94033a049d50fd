"""`workbench study run`: submit a study's jobs, each after the jobs it reads from, and wait for them.

The study folder holds ``study.json`` (the file it was made from and its digest), ``jobs.json`` (each submitted job's
scheduler id and log), ``state/`` (each job's start, end and error), ``logs/`` (submitit's logs, per run folder), the
run folders and ``table.md`` (the cross-task table over the run folders whose jobs are all done). A job already done in its
run folder is skipped, and so is every job that is queued or running; ``--resume`` submits what is missing. While one
`study run` submits or waits, the study folder is locked (``.lock``): a second one is refused.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import atomic_write_text, write_json
from .executors import Inline, make_executor, slurm_queue
from .jobs import StudyJob, dependencies, is_done, state_path, study_jobs
from .spec import Study, load_study
from .status import FINAL, read_submissions, status_table, study_status


@contextmanager
def study_lock(study_dir: Path):
    study_dir.mkdir(parents=True, exist_ok=True)
    with (study_dir / ".lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkbenchError(
                f"study folder {study_dir} is being written by another `workbench study run`: wait for it to finish"
            ) from None
        yield


def _check_folder(study: Study, study_dir: Path, resume: bool) -> None:
    """A new study folder, or with --resume one made from this study (same models, tasks, seeds, phases)."""
    made = study_dir / "study.json"
    if made.is_file():
        then = json.loads(made.read_text(encoding="utf-8"))
        if then.get("digest") != study.digest():
            raise WorkbenchError(
                f"study folder {study_dir} was made with another study file ({then.get('file')}): "
                "use that file, or set another out"
            )
        if not resume:
            raise WorkbenchError(f"study folder {study_dir} exists: pass --resume to submit what is missing")
    elif resume and any(p.name != ".lock" for p in study_dir.iterdir()):
        raise WorkbenchError(f"--resume: {study_dir} is not a study folder (no study.json): set another out")
    write_json(made, {"file": study.path, "digest": study.digest(), "study": study.model_dump()})


def _to_run(study_dir: Path, jobs: list[StudyJob], live: set[str]) -> list[StudyJob]:
    """Jobs not done (and not queued or running), and every job that reads one of them."""
    todo: list[StudyJob] = []
    for job in jobs:
        if job.key in live:
            continue
        if not is_done(study_dir, job) or any(d in todo for d in dependencies(job, jobs)):
            todo.append(job)
    return todo


def _record(study_dir: Path, job: StudyJob, job_id: str, kind: str, log: str) -> None:
    path = study_dir / "jobs.json"
    subs = read_submissions(study_dir)
    subs[job.key] = {"job_id": job_id, "executor": kind, "submitted": time.time(), "log": log}
    write_json(path, subs)


def run_study(
    path: str | Path, resume: bool = False, wait: bool = False, echo: Callable[[str], None] = print, progress=None
) -> list[dict]:
    """Submit what the study needs; with ``wait`` (always for inline and local: this process hands the jobs out),
    return when every job is done, failed or not run. Returns the status rows."""
    study = load_study(path)
    study_dir = Path(study.out).resolve()
    executor = make_executor(study, study_dir)
    jobs = study_jobs(study)
    with study_lock(study_dir):
        _check_folder(study, study_dir, resume)
        queue = slurm_queue() if executor.kind == "slurm" else None
        live = {r["key"] for r in study_status(study_dir, jobs, queue) if r["status"] in ("queued", "running")}
        todo = _to_run(study_dir, jobs, live)
        for job in todo:
            state_path(study_dir, job).unlink(missing_ok=True)  # an old failure is not this submission's
        echo(f"study {study_dir}: {len(jobs)} jobs, {len(jobs) - len(todo) - len(live)} done, "
             f"{len(live)} queued or running, {len(todo)} to submit ({executor.kind})")  # fmt: skip
        if executor.kind == "slurm":
            ids = {k: v["job_id"] for k, v in read_submissions(study_dir).items() if k in live}
            for job in todo:
                after = [ids[d.key] for d in dependencies(job, jobs) if d.key in ids]
                ids[job.key] = executor.submit(job, after)
                _record(study_dir, job, ids[job.key], "slurm", str(executor.log_dir(job)))
                echo(f"submitted {job.key}: job {ids[job.key]}" + (f" after {', '.join(after)}" if after else ""))
            if wait:
                _wait(study_dir, jobs, progress)
        else:
            _hand_out(study, study_dir, executor, jobs, todo, echo, progress)
        rows = study_status(study_dir, jobs, slurm_queue() if executor.kind == "slurm" else None)
        if all(r["status"] in FINAL for r in rows):
            write_table(study_dir, jobs)
        return rows


def _hand_out(study: Study, study_dir: Path, executor, jobs, todo, echo, progress) -> None:
    """Inline and local: submit each job once its dependencies are done, at most ``max_jobs`` at once."""
    pending, running = list(todo), {}
    limit = 1 if isinstance(executor, Inline) else study.executor.max_jobs

    def tick() -> None:
        if progress:
            progress(1)

    while pending or running:
        for key, handle in list(running.items()):
            if handle.done():
                running.pop(key)
                tick()
        rows = {r["key"]: r for r in study_status(study_dir, jobs, None)}
        started = False
        for job in list(pending):
            deps = dependencies(job, jobs)
            bad = next((d for d in deps if rows[d.key]["status"] in FINAL[1:]), None)
            if bad is not None:
                pending.remove(job)
                reason = f"{bad.key} {rows[bad.key]['status']}"
                write_json(state_path(study_dir, job), {"status": "not run", "reason": reason})
                tick()
                continue
            if len(running) >= limit or not all(rows[d.key]["status"] == "done" for d in deps):
                continue
            pending.remove(job)
            job_id = executor.submit(job, [])
            started = True
            if isinstance(executor, Inline):
                _record(study_dir, job, job_id, "inline", "")
                echo(f"ran {job.key}")
                tick()
                rows = {r["key"]: r for r in study_status(study_dir, jobs, None)}  # what it just did
            else:
                _record(study_dir, job, job_id, executor.kind, str(executor.log_dir(job)))
                echo(f"started {job.key}: pid {job_id}")
                running[job.key] = executor.jobs[job_id]
        if running:
            time.sleep(study.executor.poll_seconds)
        elif pending and not started:
            raise WorkbenchError(f"study {study_dir}: jobs wait for jobs that are not in this submission")


def _wait(study_dir: Path, jobs: list[StudyJob], progress, poll: float = 2.0) -> None:
    seen = 0
    while True:
        rows = study_status(study_dir, jobs, slurm_queue())
        final = sum(r["status"] in FINAL for r in rows)
        if progress and final > seen:
            progress(final - seen)
            seen = final
        if final == len(rows):
            return
        time.sleep(poll)


def write_table(study_dir: Path, jobs: list[StudyJob]) -> Path | None:
    """The cross-task table over the study's run folders whose jobs are all done, into ``table.md``."""
    from ..experiment.crosstask import cross_task_table, task_row

    runs = sorted({j.run for j in jobs} - {j.run for j in jobs if not is_done(study_dir, j)})
    if not runs:
        return None
    path = study_dir / "table.md"
    atomic_write_text(path, cross_task_table([task_row(study_dir / r) for r in runs]))
    return path


def study_status_rows(path: str | Path) -> list[dict]:
    """Each job's status row (``status.study_status``) for a study file whose folder exists."""
    study = load_study(path)
    study_dir = Path(study.out).resolve()
    if not (study_dir / "study.json").is_file():
        raise WorkbenchError(f"no study in {study_dir} yet: run `workbench study run {path}` first")
    queue = slurm_queue() if study.executor.kind == "slurm" else None
    return study_status(study_dir, study_jobs(study), queue)


def status_text(path: str | Path) -> str:
    return f"study {Path(load_study(path).out).resolve()}\n\n" + status_table(study_status_rows(path))

"""A study's record for the docs: each job's time, the wall time from the first job's start to the last job's end,
the sum of the jobs' own times (what the same phases take one after another) and the cross-task rows of its run
folders. `workbench publish --study FILE` commits it as ``docs/records/study.json``; ``experiment.study_page`` renders
it."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import WorkbenchError
from ..experiment.crosstask import task_row
from ..experiment.engine import git_commit
from .jobs import is_done, read_state, study_jobs
from .spec import load_study
from .status import read_submissions


def study_record(path: str | Path) -> dict:
    """The record of a finished study (every job done); anything else is one line naming what is missing."""
    study = load_study(path)
    study_dir = Path(study.out).resolve()
    jobs = study_jobs(study)
    missing = [j.key for j in jobs if not is_done(study_dir, j)]
    if missing:
        raise WorkbenchError(
            f"study {study_dir} is not finished ({len(missing)} jobs not done, first {missing[0]}): "
            f"`workbench study run {path} --resume`"
        )
    if study.quick:
        raise WorkbenchError(f"study {path} ran with quick: true; publish a full study, whose numbers mean something")
    subs = read_submissions(study_dir)
    rows = []
    for job in jobs:
        state = read_state(study_dir, job)
        marker = json.loads((study_dir / job.run / "phases" / f"{job.run_key}.done.json").read_text(encoding="utf-8"))
        rows.append({
            "key": job.key, "phase": job.phase, "seed": job.seed, "seconds": marker.get("seconds"),
            "started": state.get("started"), "ended": state.get("ended"), "git_commit": marker.get("git_commit"),
            "executor": (subs.get(job.key) or {}).get("executor"),
        })  # fmt: skip
    spans = [(r["started"], r["ended"]) for r in rows if r["started"] and r["ended"]]
    return {
        "file": str(Path(study.path).relative_to(Path.cwd()))
        if Path(study.path).is_relative_to(Path.cwd())
        else study.path,
        "study": study.model_dump(include={"models", "tasks", "seeds", "phases", "executor", "resources"}),
        "jobs": rows,
        "wall_seconds": round(max(e for _, e in spans) - min(s for s, _ in spans), 1) if spans else None,
        "job_seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
        "runs": [task_row(study_dir / run) for run in dict.fromkeys(j.run for j in jobs)],
        "published_at": git_commit(),
    }

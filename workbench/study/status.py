"""What each job of a study is doing: done (its run folder's marker), queued, running, failed (with the error's line),
or not run (with the failed or cancelled job it waited for); with its scheduler id and the time it took."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

from ..experiment.layout import RunLayout
from .jobs import StudyJob, dependencies, is_done, read_state

FINAL = ("done", "failed", "not run", "cancelled")


def read_submissions(study_dir: Path) -> dict[str, dict]:
    path = Path(study_dir) / "jobs.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _seconds(study_dir: Path, job: StudyJob, state: dict) -> float | None:
    marker = RunLayout(Path(study_dir) / job.run).marker(job.run_key)
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8")).get("seconds")
    if "started" in state:
        return round(state.get("ended", time.time()) - state["started"], 1)
    return None


def job_status(study_dir: Path, job: StudyJob, sub: dict | None, queue: dict | None) -> tuple[str, str]:
    """(status, why) of one job, from its run folder, its state file and the scheduler's queue."""
    if is_done(study_dir, job):
        return "done", ""
    state = read_state(study_dir, job)
    if state.get("status") in ("failed", "not run"):
        return state["status"], state.get("error") or state.get("reason", "")
    if sub is None:
        return "not submitted", ""
    job_id, kind = str(sub.get("job_id")), sub.get("executor")
    if kind == "slurm" and queue is not None and job_id in queue:
        slurm_state, reason = queue[job_id]
        if slurm_state == "PENDING":
            return "queued", "" if reason in ("None", "Dependency", "Priority", "Resources") else reason
        if slurm_state in ("RUNNING", "CONFIGURING", "COMPLETING"):
            return "running", ""
        if slurm_state in ("CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"):
            return "cancelled" if slurm_state == "CANCELLED" else "failed", f"SLURM {slurm_state.lower()}"
    if kind == "local" and state.get("status") != "running" and psutil.pid_exists(int(job_id)):
        return "queued", ""
    if state.get("status") == "running":
        if kind == "local" and psutil.pid_exists(int(job_id)):
            return "running", ""
        if kind == "slurm" and queue is None:
            return "running", ""
        return "failed", f"ended without finishing (killed, cancelled or out of time): see {sub.get('log', 'its log')}"
    if kind == "slurm" and queue is None:
        return "queued", ""
    return "cancelled", "cancelled before it started (scancel, or a job it waited for failed)"


def study_status(study_dir: Path, jobs: list[StudyJob], queue: dict | None) -> list[dict]:
    """One row per job; a job waiting for a failed, cancelled or not-run job is "not run", naming that job."""
    subs = read_submissions(study_dir)
    rows: dict[str, dict] = {}
    for job in jobs:  # in dependency order: a job's dependencies have rows already
        status, why = job_status(study_dir, job, subs.get(job.key), queue)
        if status in ("cancelled", "queued", "not submitted"):
            bad = next((d for d in dependencies(job, jobs) if rows[d.key]["status"] in FINAL[1:]), None)
            if bad is not None:
                status, why = "not run", f"{bad.key} {rows[bad.key]['status']}"
        state = read_state(study_dir, job)
        rows[job.key] = {
            "model": job.run.split("--")[0],
            "task": Path(job.task).stem if job.task.endswith((".yaml", ".yml")) else job.task,
            "phase": job.phase,
            "seed": "" if job.seed is None else job.seed,
            "status": status,
            "job": (subs.get(job.key) or {}).get("job_id", ""),
            "seconds": _seconds(study_dir, job, state),
            "why": why,
            "key": job.key,
        }
    return list(rows.values())


def status_table(rows: list[dict]) -> str:
    """The status as a markdown table, then one line per job that failed or did not run, saying why."""
    head = "| model | task | phase | seed | status | job | time |\n|---|---|---|---|---|---|---:|\n"
    body = "".join(
        f"| {r['model']} | {r['task']} | {r['phase']} | {r['seed']} | {r['status']} | {r['job']} | "
        + ("" if r["seconds"] is None else f"{r['seconds']:.0f} s")
        + " |\n"
        for r in rows
    )
    why = "".join(f"- {r['key']}: {r['status']}: {r['why']}\n" for r in rows if r["status"] in FINAL[1:] and r["why"])
    counts = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
    return head + body + "\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + "\n" + (f"\n{why}" if why else "")

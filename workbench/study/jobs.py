"""A study's jobs: one per run folder, phase and training seed, each with the jobs whose outputs it reads.

A job starts when what it reads exists: baseline and phase 1 after generate (they read its data; the guide's
arithmetic baseline reads the guide's own prompts, but waits all the same), phase 2 after its
seed's phase 1, causal after every seed's phases 1 and 2, route after every seed's phase 1 (``phases.PHASES``' needs),
and verify after every other phase of the run folder in the study whose results it judges (all of `run all`'s, causal
and readouts; not compare or route). Each job runs ``workbench run PHASE`` for its seed
into its run folder (``run_job``): everything that reads a run folder reads a study's folders unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import write_json
from ..experiment.layout import RunLayout
from ..experiment.phases import PHASES
from ..experiment.plan import seed_list
from .spec import Study, slug


@dataclass(frozen=True)
class StudyJob:
    """``phase`` of the run folder ``run`` (a model on a task) for one training seed (None: a phase that runs once)."""

    run: str
    model: str
    task: str
    phase: str
    seed: int | None

    @property
    def run_key(self) -> str:
        """The job's key inside its run folder (``phase1.seed-42``), as its done marker names it."""
        return self.phase if self.seed is None else f"{self.phase}.seed-{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.run}/{self.run_key}"


def study_jobs(study: Study) -> list[StudyJob]:
    """Every job, each after the jobs it depends on."""
    seeds = seed_list(study.seed, study.seeds)
    return [
        StudyJob(f"{slug(m)}--{slug(t)}", m, t, phase, s)
        for m in study.models
        for t in study.tasks
        for phase in study.phases
        for s in (seeds if PHASES[phase].seeded else [None])
    ]


def dependencies(job: StudyJob, jobs: list[StudyJob]) -> list[StudyJob]:
    """The jobs of the same run folder that ``job`` waits for."""
    mine = [j for j in jobs if j.run == job.run and j is not job]
    if job.phase == "verify":
        return [j for j in mine if j.phase != "verify" and (PHASES[j.phase].in_all or PHASES[j.phase].claims)]
    writers = {writer for _, writer in PHASES[job.phase].needs}
    if job.phase != "generate" and any(step.task_paths for step in PHASES[job.phase].steps):
        writers.add("generate")  # with a task, baseline reads the run's data
    return [j for j in mine if j.phase in writers and (job.seed is None or j.seed in (None, job.seed))]


def state_path(study_dir: Path, job: StudyJob) -> Path:
    return Path(study_dir) / "state" / job.run / f"{job.run_key}.json"


def read_state(study_dir: Path, job: StudyJob) -> dict:
    try:
        return json.loads(state_path(study_dir, job).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def is_done(study_dir: Path, job: StudyJob) -> bool:
    """Done when the run folder holds the job's marker (written once its notebooks ran through)."""
    return RunLayout(Path(study_dir) / job.run).marker(job.run_key).is_file()


def run_job(study_dir: str, job: StudyJob, study: Study, threads: int) -> str:
    """What a job runs, in its own process (or inline): ``workbench run PHASE`` for its seed, its state written
    before and after. Raises on failure, so the scheduler marks the job failed and its dependents never start."""
    from ..experiment.engine import run  # a kernel client: only the job's process needs it

    path = state_path(Path(study_dir), job)
    start = time.time()
    state = {"job": asdict(job), "host": socket.gethostname(), "pid": os.getpid(), "started": start}
    write_json(path, {**state, "status": "running"})
    threads_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the notebook kernels read it when torch starts
    try:
        run(
            job.phase,
            Path(study_dir) / job.run,
            model=job.model,
            task=job.task,
            quick=study.quick,
            seed=study.seed,
            seeds=study.seeds,
            only_seed=job.seed,
        )
    except BaseException as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        error = line if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {line}"
        write_json(path, {**state, "status": "failed", "ended": time.time(), "error": error,
                          "traceback": traceback.format_exc(limit=5)})  # fmt: skip
        raise
    finally:
        if threads_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads_before
    write_json(path, {**state, "status": "done", "ended": time.time(), "seconds": round(time.time() - start, 1)})
    return job.key

"""Where a study's jobs run: ``inline`` (this process, one after another), ``local`` (submitit's local executor:
processes on this machine) and ``slurm`` (submitit's SLURM executor: ``sbatch`` with ``afterok`` dependencies).

``submit(job, after)`` returns the scheduler's id for the job; ``after`` are the ids of the jobs it waits for that are
not done yet (only SLURM is given them: the driver submits an inline or local job only once its dependencies are
done). At most ``max_jobs`` SLURM jobs of a study run at once: each job also waits for the job before it in its slot
(``--dependency=singleton`` over ``max_jobs`` job names). A job goes into the slot whose last job it waits for anyway
(a chain stays in one slot), else into the slot with the fewest jobs, so independent chains run side by side.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from pathlib import Path

from ..core.errors import WorkbenchError
from .jobs import StudyJob, run_job
from .spec import Study


class Inline:
    kind = "inline"

    def __init__(self, study: Study, study_dir: Path):
        self.study, self.study_dir = study, study_dir

    def submit(self, job: StudyJob, after: list[str]) -> str:
        try:
            run_job(str(self.study_dir), job, self.study, self.study.resources_for(job.phase).cpus)
        except Exception:  # its state file says why; the driver marks its dependents not run
            pass
        return "inline"


class Submitit:
    """submitit's local or SLURM executor; each job's log in ``<study>/logs/<run folder>/``."""

    def __init__(self, study: Study, study_dir: Path, kind: str):
        import submitit  # only the local and SLURM executors need it

        self.study, self.study_dir, self.kind = study, study_dir, kind
        self._executor = {"local": submitit.LocalExecutor, "slurm": submitit.SlurmExecutor}[kind]
        self._slots: list[tuple[str | None, int]] = [(None, 0)] * study.executor.max_jobs  # (last job id, jobs)
        self.jobs: dict[str, object] = {}  # id -> submitit job, for the driver's polling

    def log_dir(self, job: StudyJob) -> Path:
        return self.study_dir / "logs" / job.run

    def submit(self, job: StudyJob, after: list[str]) -> str:
        res = self.study.resources_for(job.phase)
        executor = self._executor(folder=self.log_dir(job))
        if self.kind == "local":
            executor.update_parameters(timeout_min=res.minutes)
        else:
            slot = self._slot(after)
            dependency = ",".join([*([f"afterok:{':'.join(after)}"] if after else []), "singleton"])
            executor.update_parameters(
                job_name=f"wb-{self.study.digest()[:8]}-{slot}",
                time=res.minutes,
                cpus_per_task=res.cpus,
                **({"gpus_per_node": res.gpus} if res.gpus else {}),
                **({"mem": f"{int(res.mem_gb * 1024)}M"} if res.mem_gb else {}),
                **({"partition": res.partition} if res.partition else {}),
                dependency=dependency,
                additional_parameters={"kill_on_invalid_dep": "yes"},
            )
        from submitit.core.utils import FailedJobError

        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's refusal; the error says it once
                submitted = executor.submit(run_job, str(self.study_dir), job, self.study, res.cpus)
        except FailedJobError as exc:  # sbatch refused: a resource, a partition, the controller (its stderr)
            raise WorkbenchError(
                f"sbatch refused job {job.key}: {' '.join(str(exc).split())[:300]}: fix the study's resources, "
                "then `workbench study run FILE --resume`"
            ) from None
        self.jobs[submitted.job_id] = submitted
        if self.kind == "slurm":
            self._slots[slot] = (str(submitted.job_id), self._slots[slot][1] + 1)
        return str(submitted.job_id)

    def _slot(self, after: list[str]) -> int:
        chained = [i for i, (last, _) in enumerate(self._slots) if last is not None and last in after]
        return chained[0] if chained else min(range(len(self._slots)), key=lambda i: self._slots[i][1])


def slurm_queue() -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of every job SLURM still lists (``squeue``)."""
    proc = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise WorkbenchError(f"squeue failed: {proc.stderr.strip() or proc.returncode}: is the SLURM controller up?")
    out = {}
    for line in proc.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        out[job_id.strip()] = (state.strip(), reason.strip())
    return out


def check_scheduler(kind: str) -> None:
    """Before anything is submitted: SLURM's client tools are there and the controller answers (one line, exit 2)."""
    if kind != "slurm":
        return
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise WorkbenchError(
            "executor slurm: sbatch/squeue are not on PATH: run on a SLURM login node, or use executor kind local"
        )
    try:
        slurm_queue()
    except (subprocess.TimeoutExpired, WorkbenchError) as exc:
        raise WorkbenchError(
            f"executor slurm: the scheduler is unreachable ({' '.join(str(exc).split())[:200]}): "
            "check SLURM_CONF and that slurmctld runs, or use executor kind local"
        ) from None


def make_executor(study: Study, study_dir: Path):
    kind = study.executor.kind
    check_scheduler(kind)
    return Inline(study, study_dir) if kind == "inline" else Submitit(study, study_dir, kind)

"""submitit against the real one-node SLURM cluster (tests/slurm.py): a result comes back, and sacct reports what SLURM
did with a failed job and with jobs that wait for it (the study executor relies on ``--kill-on-invalid-dep=yes``).
``afterok`` order and ``scancel`` are tested through studies (tests/test_study_run.py).

The submitted functions are defined inside the tests: cloudpickle sends those by value, while a function of this
module would go by reference (``import test_slurm_cluster``), which the job's Python cannot do."""

from __future__ import annotations

import subprocess
import time

import pytest
import submitit
from slurm import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.integration]


@pytest.fixture
def executor(slurm_cluster, tmp_path):  # noqa: F811
    ex = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    ex.update_parameters(timeout_min=5, cpus_per_task=1)
    return ex


def _until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.2)


def _sacct_state(job) -> str:
    """The state sacct has for the job, read now (submitit's own read is rate-limited)."""
    return job.get_info(mode="force").get("State", "")


def test_result_equals_local(executor):
    def work(n):
        return sum(i * i for i in range(n)), [str(i) for i in range(3)]

    job = executor.submit(work, 1000)
    assert job.result() == work(1000)
    _until(lambda: _sacct_state(job) == "COMPLETED")


def _squeue(job) -> list[str]:
    """State and reason as slurmctld has them now (sacct, fed by slurmdbd, lags a few seconds behind)."""
    cmd = ["squeue", "-h", "-j", job.job_id, "-o", "%T %r"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()


def test_failed_job_and_its_dependent(executor):
    def boom():
        raise ValueError("boom")

    failed = executor.submit(boom)
    with pytest.raises(submitit.core.utils.FailedJobError, match="boom"):
        failed.result()
    _until(lambda: _sacct_state(failed) == "FAILED")
    # afterok on a failed job: SLURM keeps the dependent PENDING (DependencyNeverSatisfied) for ever, and submitit's
    # job.done() stays False; --kill-on-invalid-dep=yes cancels it instead
    executor.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{failed.job_id}"})
    stuck = executor.submit(int, "1")
    executor.update_parameters(
        slurm_additional_parameters={"dependency": f"afterok:{failed.job_id}", "kill-on-invalid-dep": "yes"}
    )
    killed = executor.submit(int, "1")
    try:
        _until(lambda: _sacct_state(killed) == "CANCELLED")
        assert killed.done()
        assert _squeue(stuck) == ["PENDING", "DependencyNeverSatisfied"]
        _until(lambda: _sacct_state(stuck) == "PENDING")  # sacct has it a few seconds after submission (UNKNOWN before)
        assert not stuck.done()
    finally:
        stuck.cancel(check=False)

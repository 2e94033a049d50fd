"""submitit against the real one-node SLURM cluster (tests/slurm.py): a result comes back and sacct reports the job
completed. ``afterok`` order, ``--kill-on-invalid-dep=yes`` and ``scancel`` are tested through studies
(tests/test_study_run.py).

The submitted functions are defined inside the tests: cloudpickle sends those by value, while a function of this
module would go by reference (``import test_slurm_cluster``), which the job's Python cannot do."""

from __future__ import annotations

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

"""A real one-node SLURM cluster for the tests: the session fixture ``slurm_cluster`` (yields the path of its
slurm.conf, with ``SLURM_CONF`` set in ``os.environ`` for the session, so sbatch/squeue/sacct and submitit use it).

Test modules take it with ``from slurm import slurm_cluster  # noqa: F401`` (pytest puts tests/ on sys.path, as for
helpers.py; ``# noqa: F811`` where a fixture or test names it as a parameter) and mark their tests ``slurm`` and
``integration``.

``scripts/slurm-cluster up`` brings the cluster up (installing Debian's packages with apt-get where they are missing:
about 30 s) in one folder that every pytest-xdist worker of the run shares (the script locks it); the last worker to
finish stops it. Where ``SLURM_CONF`` already names a cluster that script wrote (.ci/run may start one), the fixture
uses that one and leaves it running. Where the packages cannot be installed (no apt-get, not root, no mirror) or
munged cannot run, the tests skip, with the reason printed once as a warning; any other failure to come up fails them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm-cluster"
CANNOT_INSTALL = 3  # scripts/slurm-cluster's exit status when the packages or munged are out of reach
MARK = "# written by scripts/slurm-cluster"


def _cluster(command: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), command, str(folder)], capture_output=True, text=True, timeout=900, check=False
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1].removeprefix("slurm-cluster: ") if lines else f"scripts/slurm-cluster exited {proc.returncode}"


def _ours(conf: str | None) -> bool:
    """Whether ``conf`` is a slurm.conf that scripts/slurm-cluster wrote (never a real cluster's)."""
    try:
        return bool(conf) and Path(conf).read_text().startswith(MARK)
    except OSError:
        return False


@contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _up(folder: Path) -> Path:
    proc = _cluster("up", folder)
    if proc.returncode == CANNOT_INSTALL:
        reason = f"no SLURM cluster here: {_last_line(proc)}"
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    if proc.returncode != 0:
        pytest.fail(f"SLURM cluster did not come up: {_last_line(proc)}", pytrace=False)
    return folder / "slurm.conf"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.name != "posix" or not SCRIPT.exists():
        pytest.skip(f"no SLURM cluster here: {SCRIPT} needs bash on Linux")
    given = os.environ.get("SLURM_CONF")
    if _ours(given):  # started before the tests (.ci/run): checked (idempotent `up`), used, left running
        yield _up(Path(given).parent)
        return
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "slurm"  # one for all workers
    users = folder / "users"
    users.mkdir(parents=True, exist_ok=True)
    me = users / str(os.getpid())
    with _locked(folder / ".users.lock"):
        me.touch()
    try:
        conf = _up(folder)
        os.environ["SLURM_CONF"] = str(conf)
        yield conf
    finally:
        if given is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = given
        with _locked(folder / ".users.lock"):
            me.unlink(missing_ok=True)
            if not any(psutil.pid_exists(int(user.name)) for user in users.iterdir() if user.name.isdigit()):
                _cluster("down", folder)

"""The layer explorer as a web page: notebook 06 served by Voila on the loopback interface.

``serve`` is a context manager for tests and benchmarks: Voila in its own process group on a free port, ready when
its port accepts a connection, and stopped — with every kernel it started — when the block ends, whatever happens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import WorkbenchError
from ..tasks.spec import load_task

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06_layer_explorer.ipynb"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def voila_command(port: int, notebook: Path = NOTEBOOK, check_xsrf: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"]
    if not check_xsrf:  # lets a test POST the kernel shutdown without a cookie dance; loopback only
        cmd.append("--Voila.tornado_settings=disable_check_xsrf=True")
    return cmd


def explorer_env(
    model: str,
    run_dir: str | Path | None,
    dtype: str = "auto",
    device_map: str | None = None,
    task: str | None = None,
) -> dict:
    """The environment notebook 06 reads. Paths become absolute: Voila runs the notebook in its own folder. ``task``
    (checked here, so a bad one fails before Voila starts): its prompts and class words are shown."""
    if run_dir is not None and not Path(run_dir).is_dir():
        raise WorkbenchError(
            f"run folder {str(run_dir)!r} does not exist: pass a folder `workbench run` wrote, or none"
        )
    if Path(model).exists():
        model = str(Path(model).resolve())
    env = dict(os.environ, WORKBENCH_MODEL=model, WORKBENCH_RUN=str(Path(run_dir).resolve()) if run_dir else "")
    env.update(WORKBENCH_DTYPE=dtype, WORKBENCH_DEVICE_MAP=device_map or "")
    env["WORKBENCH_TASK"] = "" if task is None else str(load_task(task).path)
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return env


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            stack.append(child)
    return found


def adopt_orphans() -> bool:
    """Linux: make this process a child subreaper, so that a kernel Voila leaves behind when it exits is re-parented
    here (and ``stop_orphans`` finds it) instead of to init. False where that is not available."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def stop_orphans(grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, to every process still below this one, and reap them. Only for a process whose every
    child is the explorer's (the `workbench explore` command)."""
    victims = _descendants(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _reap(victims):
            time.sleep(0.1)


def _reap(pids: list[int]) -> list[int]:
    """The ones of ``pids`` still alive; reaps those that are this process's children and have exited."""
    alive = []
    for pid in pids:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                continue
        except ChildProcessError:  # not our child: alive while /proc has it and it is no zombie
            pass
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        alive.append(pid)
    return alive


def _signal(proc: subprocess.Popen, pids: list[int], sig: int) -> None:
    for send, target in ((os.killpg, proc.pid), *((os.kill, pid) for pid in pids)):
        try:
            send(target, sig)
        except (ProcessLookupError, PermissionError):  # gone already (or the pid was reused meanwhile)
            pass


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to Voila's process group and to every descendant (kernels may sit in sessions of their own); SIGKILL
    to whatever is still alive ``grace`` seconds later."""
    victims = _descendants(proc.pid)
    _signal(proc, victims, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (proc.poll() is None or any(Path(f"/proc/{p}").exists() for p in victims)):
        time.sleep(0.1)
    if proc.poll() is None or any(Path(f"/proc/{p}").exists() for p in victims):
        _signal(proc, victims, signal.SIGKILL)
    proc.wait()


def serve_until_stopped(
    model: str,
    run_dir: str | Path | None,
    port: int,
    dtype: str = "auto",
    device_map: str | None = None,
    task: str | None = None,
) -> int:
    """`workbench explore`: Voila in the foreground until it exits, Ctrl-C or SIGTERM; returns the exit status (130 or
    143 for the signals). Handlers are installed even when the command was started as a background job (which
    inherits Ctrl-C ignored), and the process adopts orphans, so no kernel outlives it."""
    env = explorer_env(model, run_dir, dtype, device_map, task)
    adopt_orphans()
    received: dict[str, int] = {}

    def on_signal(signum, _frame):
        received["code"] = 128 + signum
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    proc = subprocess.Popen(voila_command(port), env=env, cwd=ROOT, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return received.get("code", 130)
    finally:
        stop(proc)  # Voila and every kernel it started, SIGTERM first
        stop_orphans()  # a kernel Voila left behind, re-parented here


@contextmanager
def serve(
    model: str = "default",
    run_dir: str | Path | None = None,
    port: int | None = None,
    timeout: float = 120.0,
    check_xsrf: bool = True,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve notebook 06 with Voila on 127.0.0.1; yields (page URL, the Voila process). Start-up is bounded by
    ``timeout`` seconds; the server and its kernels are stopped when the block exits."""
    port = port or free_port()
    env = explorer_env(model, run_dir)
    log = tempfile.NamedTemporaryFile(prefix="voila-", suffix=".log", delete=False)
    proc = None
    try:
        proc = subprocess.Popen(
            voila_command(port, check_xsrf=check_xsrf),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                raise WorkbenchError(
                    f"voila exited with status {proc.returncode} before serving: {tail.strip()[-300:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise WorkbenchError(
                        f"voila did not open port {port} within {timeout:.0f} s (log: {log.name})"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        if proc is not None:
            stop(proc)
        log.close()
        Path(log.name).unlink(missing_ok=True)

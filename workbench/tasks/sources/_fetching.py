"""What every source shares: the Source record, the report a fetch keeps, and running tools, downloading and
extracting (one error line naming the command and its first error line)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ...core.errors import WorkbenchError

TIMEOUT_S = 600  # per command
KEYS = ("text", "label", "group", "subset")


@dataclass(frozen=True)
class Source:
    name: str
    tools: tuple[str, ...]  # executables needed ("pip" = sys.executable -m pip)
    licence: str
    attribution: str
    labels: tuple[str, ...]
    prepare: Callable[[Path], list[dict]]  # download into the given empty work dir, return examples


# ---- what a prepare reports while fetch runs it (echo lines, bytes downloaded, versions/licences for the manifest)


@dataclass
class _Record:
    echo: Callable[[str], None] = lambda line: None
    downloaded_bytes: int = 0
    extra: dict = field(default_factory=lambda: {"versions": {}})


_RECORD: ContextVar[_Record] = ContextVar("record")


def _current() -> _Record:
    return _RECORD.get(None) or _Record()  # outside fetch (tests, fixture building): a throwaway record


def _say(line: str) -> None:
    _current().echo(line)


def _note_version(package: str, version: str) -> None:
    _current().extra["versions"][package] = version


def _size(n: float) -> str:
    if n < 1e3:
        return f"{n:.0f} B"
    return f"{n / 1e3:.1f} KB" if n < 1e6 else f"{n / 1e6:.1f} MB"


# ---- running tools, downloading, extracting

_HINTS = {
    "pip": "check access to PyPI (pip's index-url and proxy settings)",
    "npm": "check access to the npm registry (`npm config get registry`)",
    "apt-get": "check access to the Debian mirror (run `apt-get update`)",
}
_INSTALL = {
    "pip": "pip (python -m ensurepip)",
    "npm": "npm (apt-get install npm)",
    "apt-get": "apt (a Debian or Ubuntu system)",
    "apt-cache": "apt (a Debian or Ubuntu system)",
    "dpkg": "dpkg (a Debian or Ubuntu system)",
}


def _has_tool(tool: str) -> bool:
    return importlib.util.find_spec("pip") is not None if tool == "pip" else shutil.which(tool) is not None


def _check_tools(source: Source, cache: Path) -> None:
    for tool in source.tools:
        if not _has_tool(tool):
            where = f"available to {sys.executable}" if tool == "pip" else "on PATH"
            raise WorkbenchError(
                f"`{tool}` is not {where}: install {_INSTALL.get(tool, tool)}, or fetch on a machine that has it "
                f"and copy {cache / 'tasks' / source.name}"
            )


# The line of a failed command's output worth showing: its first error line (apt's "E:", pip's "ERROR:", npm's
# "npm error", dpkg's), skipping npm's code/errno/syscall and log-file lines; else its last line.
_ERROR_LINE = re.compile(r"E:|ERROR|npm error|npm ERR!|dpkg")
_NOISE_LINE = re.compile(r"complete log|^npm (?:error|ERR!) (?:code|errno|syscall) ")


def _shown(cmd: list[str]) -> str:
    return " ".join(["python" if part == sys.executable else part for part in cmd])


def _run(cmd: list[str], cwd: Path, hint: str) -> str:
    """Run one command (output captured, with a timeout); a failure is a one-line error naming it and its stderr."""
    shown = _shown(cmd)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise WorkbenchError(f"`{shown}` timed out after {TIMEOUT_S} s: {hint}") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if _ERROR_LINE.match(line) and not _NOISE_LINE.search(line)]
        detail = errors[0] if errors else lines[-1] if lines else f"exit status {proc.returncode}"
        if "Unable to locate package" in proc.stderr:
            hint = "run `apt-get update` (the apt package lists are missing or stale), then fetch again"
        raise WorkbenchError(f"`{shown}` failed ({detail}): {hint}")
    return proc.stdout


def _download(name: str, cmd: list[str], work: Path, hint: str) -> Path:
    """Run a download command in work and return the one file it added, echoing its size and time."""
    before, start = set(work.iterdir()), time.monotonic()
    _run(cmd, work, hint)
    new = sorted(set(work.iterdir()) - before)
    if len(new) != 1:
        raise WorkbenchError(f"`{_shown(cmd)}` left {len(new)} new files in {work}, expected one: {hint}")
    size = new[0].stat().st_size
    _current().downloaded_bytes += size
    _say(f"{name}: downloaded {new[0].name} ({_size(size)}) in {time.monotonic() - start:.1f} s")
    return new[0]


def _untar(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise WorkbenchError(f"cannot extract {archive.name} ({exc}): the download is damaged; fetch again") from None
    return dest


def _apt_extract(name: str, package: str, work: Path) -> Path:
    """`apt-get download` one package into work and `dpkg -x` it; returns the extracted root."""
    deb = _download(name, ["apt-get", "download", package], work, _HINTS["apt-get"])
    dest, start = work / package, time.monotonic()
    _run(["dpkg", "-x", str(deb), str(dest)], work, f"{deb.name} looks damaged: fetch again")
    _note_version(package, unquote(deb.name.split("_")[1]))  # name_version_arch.deb, the epoch's ':' as %3a
    _say(f"{name}: extracted {deb.name} in {time.monotonic() - start:.1f} s")
    return dest


def _find(root: Path, pattern: str) -> Path:
    """The first path (sorted) under root matching a glob pattern; none is an 'archive missing a file' error."""
    hits = sorted(root.glob(pattern))
    if not hits:
        raise WorkbenchError(
            f"{pattern} not found under {root}: the downloaded archive lacks an expected file (its layout changed?); "
            "report it with the package version"
        )
    return hits[0]


def _lines(path: Path) -> Iterator[str]:
    """A text file's lines without line endings (CRLF or LF), blank lines skipped."""
    with path.open(encoding="utf-8", newline="") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\r\n")

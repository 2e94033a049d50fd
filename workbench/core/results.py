"""Result files: JSON with a schema version and every setting, written atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .errors import WorkbenchError

SCHEMA_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)
_LIBRARIES = ("workbench", "torch", "transformer-lens", "transformers", "peft", "scikit-learn", "numpy", "plotly")


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the checkout at ``cwd`` (default: the workbench's own), None outside a git checkout."""
    cwd = Path(__file__).resolve().parents[2] if cwd is None else Path(cwd)
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def environment() -> dict:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "libraries": versions}


def check_writable(path: str | Path) -> Path:
    """Fail early (before any model work) when an output file could not be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise WorkbenchError(
            f"output {str(path)!r} is a directory: pass a file path such as {str(path / 'result.json')!r}"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise WorkbenchError(
            f"cannot write output {str(path)!r} ({exc.strerror}): choose a writable location"
        ) from None
    return path


def check_free_space(folder: str | Path, need_mb: int) -> None:
    """Fail before the work when the disk holding ``folder`` has less than ``need_mb`` MiB free."""
    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    free_mb = shutil.disk_usage(probe).free // 2**20
    if free_mb < need_mb:
        raise WorkbenchError(
            f"only {free_mb} MB free on the disk of {str(folder)!r} and the run needs about {need_mb} MB: "
            "free some space or choose another --out"
        )


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file beside ``path`` and rename over it: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def envelope(kind: str, payload: dict, settings: dict | None = None) -> dict:
    """The one shape every result file has: schema version, kind, time, the payload, the settings (when the writer
    has any beyond the payload) and the environment."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
        **({"settings": settings} if settings is not None else {}),
        "environment": environment(),
    }


def write_json(path: str | Path, doc: dict) -> Path:
    """A JSON document, indented, atomically."""
    return atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_result(path: str | Path, kind: str, payload: dict, settings: dict | None = None) -> Path:
    """Write one result JSON in the envelope (see ``envelope``)."""
    return write_json(path, envelope(kind, payload, settings))


def read_result(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read result file {str(path)!r}: {exc}") from None


ENVELOPE = ("schema_version", "kind", "created", "settings", "environment")


def cached_result(path: str | Path, kind: str, settings: dict, make: Callable[[], dict]) -> dict:
    """``make()``'s result, written to ``path`` in the envelope with ``settings``; a file already there made with the
    same settings is read back instead (its ``created`` time says when), so a rerun redoes nothing it has. Returns the
    payload (the envelope's own keys left out)."""
    path = Path(path)
    if path.is_file():
        saved = read_result(path)
        if saved.get("settings") == settings:
            return {k: v for k, v in saved.items() if k not in ENVELOPE}
    payload = make()
    write_result(path, kind, payload, settings)
    return payload


def with_marked_block(text: str, block: str, start: str, end: str) -> str:
    """``text`` with the block between the ``start`` and ``end`` marker lines replaced by ``block`` (appended when it
    has none). ``block`` holds its markers."""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block.rstrip("\n") + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block


def marked_block(text: str, start: str, end: str) -> str | None:
    """The block of ``text`` between its ``start`` and ``end`` markers, markers included (None when it has none)."""
    if start not in text or end not in text:
        return None
    return start + text.split(start, 1)[1].split(end, 1)[0] + end + "\n"

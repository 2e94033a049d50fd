"""run.json and run.log of a run folder, as `workbench run` keeps them: every status change saved at once, merged
into the file on disk."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import SCHEMA_VERSION, environment, write_json
from .layout import RunLayout
from .phases import PHASES, Phase


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read {str(path)!r} ({exc}): delete it or choose another --out") from None


class RunRecord:
    """run.json and run.log of one `workbench run`: every status change is saved at once. A save merges into the
    file as it is on disk, changing only what this run changed (its phases, its side run, or, for a main run, the
    settings), so side phases running at the same time in one folder (`run compare` beside `run causal`) keep each
    other's entries."""

    def __init__(self, layout: RunLayout, phases: Mapping[str, Phase], echo: Callable[[str], None]):
        self.layout, self.phases, self.echo = layout, phases, echo
        self.doc = _read_json(layout.run_json) or {}
        self.doc.setdefault("phases", {})
        self.mine: set[str] = set()  # the phase keys this run changed
        self.side: str | None = None  # the side phase this run is, if it is one

    def say(self, line: str) -> None:
        self.echo(line)
        with self.layout.run_log.open("a", encoding="utf-8") as fh:
            fh.write(f"{_now()} {line}\n")

    def start(self, phase: str, model: str, settings: dict, commit: str | None, side: bool) -> None:
        doc = self.doc
        doc.update({"schema_version": SCHEMA_VERSION, "kind": "run", "created": doc.get("created", _now())})
        if side:  # a side run (compare) into the same folder keeps the experiment's settings as they are
            self.side = phase
            doc.setdefault("side_runs", {})[phase] = {
                "model": model,
                "settings": settings,
                "git_commit": commit,
                "environment": environment(),
                "updated": _now(),
            }
        else:
            doc.update({"model": model, "settings": settings, "git_commit": commit, "environment": environment()})
        self.save()

    def set(self, key: str, **state) -> None:
        self.doc["phases"][key] = state
        self.mine.add(key)
        self.save()

    def save(self) -> None:
        """Merge into run.json under an exclusive lock (``.run.json.lock``): a study runs several jobs of one run
        folder at once, and a read-merge-write without the lock could drop another job's entry."""
        lock = self.layout.root / ".run.json.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self._merge_and_write()

    def _merge_and_write(self) -> None:
        self.doc["updated"] = _now()
        disk = _read_json(self.layout.run_json) or {}
        mine = {k: v for k, v in self.doc.items() if k not in ("phases", "side_runs")}
        merged = {**disk, **(mine if not self.side else {k: v for k, v in mine.items() if k not in disk})}
        merged["updated"] = self.doc["updated"]
        merged["phases"] = {**disk.get("phases", {}), **{k: self.doc["phases"][k] for k in self.mine}}
        side_runs = dict(disk.get("side_runs", {}))
        if self.side:
            side_runs[self.side] = self.doc["side_runs"][self.side]
        if side_runs:
            merged["side_runs"] = side_runs
        self.doc = merged
        _save_run(self.layout.run_json, self.doc, self.phases)


def _save_run(path: Path, doc: dict, phases: Mapping[str, Phase] = PHASES) -> None:
    """run.json; ``quick`` is true while a finished phase of the current seeds ran with --quick sizes (a later
    `run verify` without the flag does not make a quick run's numbers full ones)."""
    seeds = {f"seed-{s}" for s in (doc.get("settings") or {}).get("seeds") or []}
    current = [
        p
        for key, p in doc["phases"].items()
        if (phases[key.split(".")[0]].in_all if key.split(".")[0] in phases else True)
        and ("." not in key or key.split(".", 1)[1] in seeds)
    ]
    doc["quick"] = any(p.get("quick") for p in current if p.get("status") == "done")
    write_json(path, doc)

"""The JSONL and YAML readers and writers every input file goes through (a broken line is reported by file and line
number)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import yaml

from .errors import WorkbenchError
from .results import atomic_write_text


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def jsonl_lines(
    path: str | Path, what: str = "data file", make: str = "create it with `workbench data generate --output {path}`"
) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for each non-blank line of a JSONL file; a missing or unreadable file or a broken
    line is one error naming file and line. ``what`` names the file in messages; ``make`` says how to create one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkbenchError(f"{what} {str(path)!r} does not exist: {make.format(path=path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read {what} {str(path)!r}: {exc}") from None
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 and friends may sit inside a record
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{path}:{n}: broken JSON ({exc.msg}): fix or delete that line") from None
        if not isinstance(record, dict):
            raise WorkbenchError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
        yield n, record


def read_jsonl(
    path: str | Path,
    required: tuple[str, ...] = ("prompt", "response"),
    *,
    allowed: tuple[str, ...] | None = None,
    what: str = "data file",
    make: str = "create it with `workbench data generate --output {path}`",
) -> list[dict]:
    """Read JSONL records (``jsonl_lines``); a missing field or (with ``allowed``) an unknown key is one error naming
    file and line, and so is a file with no records."""
    records = []
    for n, record in jsonl_lines(path, what, make):
        for key in required:
            if not isinstance(record.get(key), str) or not record[key]:
                raise WorkbenchError(
                    f"{path}:{n}: field {key!r} is missing or not a non-empty string: every line needs {list(required)}"
                )
        unknown = sorted(set(record) - {*required, *allowed}) if allowed is not None else []
        if unknown:
            raise WorkbenchError(
                f"{path}:{n}: unknown key {unknown[0]!r}: the keys are {', '.join((*required, *allowed))}"
            )
        records.append(record)
    if not records:
        raise WorkbenchError(f"{what} {str(path)!r} has no records: {make.format(path=Path(path))}")
    return records


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping (safe loader); a missing file or bad YAML is one line naming file and line."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise WorkbenchError(f"config file {str(path)!r} does not exist: check the --config path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else "check the YAML syntax there"
        raise WorkbenchError(f"{path}{where}: invalid YAML ({problem}): {fix}") from None
    if not isinstance(values, dict):
        raise WorkbenchError(f"{path}: expected a mapping of keys to values at the top level")
    return values

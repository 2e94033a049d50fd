"""YAML spec files validated by pydantic: the one line a bad key or value gets (an unknown key names the nearest)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .data import read_yaml
from .errors import WorkbenchError


def explain(
    err: ValidationError, source: str, root: type[BaseModel], sections: Mapping[str, type[BaseModel]] = {}
) -> str:
    """``source: unknown key 'x'; did you mean 'y'?`` or ``source: key 'x': message (got value)``."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = sections.get(loc[0], root) if len(loc) > 1 else root
        near = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.0)
        return f"{source}: unknown key {key!r}; did you mean {near[0] if near else ''!r}?"
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: key {key!r}: {message} (got {first.get('input')!r})"


def load_spec(path: str | Path, root: type[BaseModel], sections: Mapping[str, type[BaseModel]] = {}):
    """A YAML file (a mapping) validated as ``root``; any problem is one line naming the file and the key."""
    values = read_yaml(path)
    try:
        return root.model_validate(values)
    except ValidationError as err:
        raise WorkbenchError(explain(err, str(path), root, sections)) from None

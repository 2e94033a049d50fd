"""What several test modules share, written once: running the CLI (in a fresh process or in this one), the one-line
error every bad input must produce, and reading a notebook's `parameters` cell and closing findings.

Test modules import it as ``from helpers import ...``: pytest puts tests/ on sys.path (its default ``prepend`` import
mode, tests/ having no __init__.py), as it does for conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_cli(*args, timeout: float = 600, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`workbench ARGS...` in a fresh interpreter (``sys.executable -m workbench.cli``); arguments go through str(),
    so paths and numbers can be passed as they are. Output is captured as text; the exit status is not checked.
    ``env``: variables set on top of this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )


def cli(capsys, *args) -> tuple[int, str, str]:
    """`workbench ARGS...` in this process: (exit status, stdout, stderr). A command that returns normally counts as
    exit status 0."""
    from workbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit status 2 and exactly one non-blank stderr line, starting `error: `, no traceback, containing each needle."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def notebook_parameters(nb) -> dict:
    """The defaults of a notebook's one `parameters` cell (the values papermill overrides), by executing that cell:
    it holds literals only."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged `parameters`"
    assert cells[0].cell_type == "code"
    scope: dict = {}
    exec(cells[0].source, scope)
    scope.pop("__builtins__", None)
    return scope


def closing_markdown(nb) -> str:
    """The Markdown an executed notebook's last cell displayed (its "What we found" paragraph)."""
    texts = [o["data"]["text/markdown"] for o in nb.cells[-1].outputs if "text/markdown" in o.get("data", {})]
    assert texts, "the closing cell must display its findings as Markdown"
    return texts[-1]

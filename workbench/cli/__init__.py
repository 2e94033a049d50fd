"""`workbench` command line: mirrors the guide's `lazarus introspect ...` commands. Thin over the Python API, one
module per command group.

Each command imports what it needs inside its function, so that `workbench --help` and bad-input errors do not pay
for importing torch and transformers (seconds).
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.exceptions import TyperException

from ..core.errors import WorkbenchError

# isort: off
from . import introspect, causal, data, train, run, route, explore, study  # noqa: F401  (registers the commands, in this order)

# isort: on
from ._app import _echo_warning, app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input prints one line and exits 2, never a traceback."""
    warnings.showwarning = _echo_warning
    try:
        code = app(args=argv, standalone_mode=False)  # outside standalone mode click returns typer.Exit's code
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:  # click-style usage errors: one line, with where to look
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `workbench` or `workbench introspect`
            print(ctx.get_help() if ctx else "", file=sys.stderr)
            sys.exit(2)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code != 0:
        sys.exit(code)

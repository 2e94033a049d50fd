"""The CLI reference (docs/cli.md), generated from the typer app by walking its command tree.

``render()`` returns the markdown: one heading per group and command, in the order the app lists them, with the
usage line, the first paragraph of the help and a table of the parameters. ``python -m workbench.cli_reference
docs/cli.md`` writes the file; with ``--check`` it writes nothing and exits 1 when the file differs from ``render()``.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from pathlib import Path

HEADER = (
    "# CLI reference\n\nGenerated from the `workbench` command's own definitions by `workbench/cli_reference.py`; "
    "do not edit by hand. Regenerate with `make docs` (`python -m workbench.cli_reference docs/cli.md`).\n"
)


def _cell(text) -> str:
    """Prose in a table cell: one line, ``|`` escaped, ``<`` as an entity (``seed-<s>/`` is not an HTML tag)."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _code(text) -> str:
    return "`" + " ".join(str(text).split()).replace("|", "\\|") + "`"


def _type(param, ctx) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    # click's make_metavar(ctx); the click that typer >= 0.25 bundles has display_type(ctx) ("<int range>") instead
    metavar = (param.make_metavar(ctx) if hasattr(param, "make_metavar") else param.display_type(ctx)).strip("<>")
    bounds = [
        f"{op} {v}"
        for op, v in ((">=", getattr(param, "min", None)), ("<=", getattr(param, "max", None)))
        if v is not None
    ]
    return ", ".join([_code(metavar.removesuffix(" range") if bounds else metavar), *bounds])


def _default(param) -> str:
    unset = param.default is None or callable(param.default) or (param.default is False and not param.secondary_opts)
    return "required" if param.required else "" if unset else _code(param.default)


def _section(command, ctx) -> list[str]:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"{'#' * min(len(ctx.command_path.split()), 6)} `{ctx.command_path}`", "", _code(usage), ""]
    if command.help:
        lines += [_cell(inspect.cleandoc(command.help).split("\n\n")[0]), ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| parameter | type | default | help |", "|---|---|---|---|"]
        for p in params:
            names = (
                ", ".join(map(_code, [*p.opts, *p.secondary_opts]))
                if p.param_type_name == "option"
                else f"{_code(p.name.upper())} (argument)"
            )
            lines.append(f"| {names} | {_type(p, ctx)} | {_default(p)} | {_cell(getattr(p, 'help', None) or '')} |")
        lines.append("")
    return lines


def render(app=None) -> str:
    """The markdown reference of ``app`` (default: ``workbench.cli.app``)."""
    import typer

    if app is None:
        from workbench.cli import app
    lines = [HEADER]

    def walk(command, ctx) -> None:
        if ctx.parent is not None:
            lines.extend(_section(command, ctx))
        for name in command.list_commands(ctx) if hasattr(command, "list_commands") else []:
            sub = command.get_command(ctx, name)
            walk(sub, typer.Context(sub, info_name=name, parent=ctx))

    root = typer.main.get_command(app)
    walk(root, typer.Context(root, info_name="workbench"))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [a for a in args if a != "--check"]
    if len(paths) != 1:
        sys.exit("usage: python -m workbench.cli_reference [--check] docs/cli.md")
    path, text = Path(paths[0]), render()
    if "--check" in args:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{paths[0]} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

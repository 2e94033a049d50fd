"""The docs: the generated CLI reference is current, the README stays a front door, links stay inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{2,6} `(workbench[^`]*)`$", re.MULTILINE)


def _commands() -> list[str]:
    """Every command path click lists, groups included, in click's order."""
    import typer

    from workbench.cli import app

    found = []

    def walk(command, ctx):
        if ctx.parent is not None:
            found.append(ctx.command_path)
        for name in command.list_commands(ctx) if hasattr(command, "list_commands") else []:
            sub = command.get_command(ctx, name)
            walk(sub, typer.Context(sub, info_name=name, parent=ctx))

    root = typer.main.get_command(app)
    walk(root, typer.Context(root, info_name="workbench"))
    return found


def test_cli_reference_is_current():
    from workbench.cli_reference import render

    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), "docs/cli.md is stale: run `make docs`"


def test_cli_reference_lists_every_command():
    from workbench.cli_reference import render

    commands, headings = _commands(), HEADING.findall(render())
    assert any(len(c.split()) == 3 for c in commands)  # the walk reaches subcommands (workbench introspect classifier)
    assert headings == commands


def test_cli_reference_check_and_write(tmp_path, capsys):
    from workbench.cli_reference import main, render

    target = tmp_path / "cli.md"
    assert main(["--check", str(target)]) == 1
    assert capsys.readouterr().err.strip() == f"{target} is stale: run `make docs`"
    assert main([str(target)]) == 0 and target.read_text(encoding="utf-8") == render()
    assert main(["--check", str(target)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["cli.md"]  # no temp file left beside it


def test_readme_is_short_and_keeps_the_claims_block():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 100, "README.md is the front door: move detail into docs/"
    start, end = text.find("<!-- claims:start -->"), text.find("<!-- claims:end -->")
    assert 0 <= start < end, "README.md lost its claims block (workbench publish rewrites it)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s) and other schemes, anchors
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), (
            f"{page.name} links to {target}, which is not in the repository"
        )
    for outside in ("../" + "shared", "DESIGN" + ".md", str(ROOT)):  # split, so that this file does not match itself
        assert outside not in text, f"{page.name} mentions {outside}, which is outside the repository"


def test_every_generated_block_is_what_its_committed_record_renders():
    """The docs cannot go stale: each block `workbench publish` owns (claims, report, comparisons, tasks, routing,
    causal) is rendered from its record in docs/records/ and compared with its page."""
    from workbench.experiment.publish import stale

    assert stale(ROOT) == [], "rerun `workbench publish` (or restore the record) for these blocks"


def test_the_published_runs_notebooks_are_pages():
    """docs/notebooks/ holds the published run's executed notebooks (phases 00-05, and each side phase whose record
    is published: 07 compare, 08 causal, 09 route), with one plotly.min.js beside them."""
    names = {p.name for p in (ROOT / "docs" / "notebooks").iterdir()}
    records = ROOT / "docs" / "records"
    stems = ["00_generate_data", "01_baseline_probing", "02_logit_lens", "03_dual_reward_training",
             "04_routing_training", "05_verification"]  # fmt: skip
    for record, stem in (("comparisons.json", "07_comparisons"), ("causal_summary.json", "08_is_the_classifier_used"),
                         ("route_compare.json", "09_virtual_experts")):  # fmt: skip
        if (records / record).is_file():
            stems.append(stem)
    assert "plotly.min.js" in names and {f"{stem}.html" for stem in stems} <= names

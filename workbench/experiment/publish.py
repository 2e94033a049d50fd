"""Publishing a verified run: its report.md (and comparisons.md when `workbench run compare` wrote one there), with the
PNG figures they embed, goes to docs/; its claims table goes into the README between the ``<!-- claims:start -->`` and
``<!-- claims:end -->`` markers; and each executed notebook (the first training seed's for phases 1 and 2) goes to
``docs/notebooks/`` as HTML with its interactive figures, so a reader sees the narrative without running anything.
Only files are copied or converted: every number comes from the run."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from plotly.offline import get_plotlyjs

from ..core.errors import WorkbenchError
from ..core.results import atomic_write_text, marked_block, with_marked_block
from ..routing import compare as routing_compare
from . import crosstask
from .layout import RunLayout
from .report import claims_table, commits, run_command

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
KEPT_BLOCKS = ((crosstask.START, crosstask.END), (routing_compare.START, routing_compare.END))
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+\.png)\)")
EXTERNAL_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>')


def publish(run_dir: str | Path, docs: str | Path = "docs/results.md", readme: str | Path = "README.md") -> list[Path]:
    """Copy ``run_dir``'s report to ``docs`` (figures into ``<docs stem>_figures/`` beside it) and replace the README's
    claims block. A quick run, a missing report or a README without the markers is a one-line error, checked before
    anything is written."""
    run_dir, docs, readme = Path(run_dir), Path(docs), Path(readme)
    layout = RunLayout(run_dir)
    report, claims_path = layout.report, layout.claims
    for path in (report, claims_path):
        if not path.is_file():
            raise WorkbenchError(f"{path} not found: verify the run first with `workbench run verify --out {run_dir}`")
    doc = json.loads(claims_path.read_text(encoding="utf-8"))
    run = doc.get("run") or {}
    if run.get("quick"):
        raise WorkbenchError(
            f"{run_dir} is a --quick run: publish a full run (`make experiment`), whose numbers mean something"
        )
    readme_text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if START not in readme_text or END not in readme_text or readme_text.index(START) > readme_text.index(END):
        raise WorkbenchError(f"{readme} has no claims block: add the lines {START} and {END} where the table goes")
    text = report.read_text(encoding="utf-8")
    if layout.comparisons_md.is_file():  # `workbench run compare` into the same folder
        heading, _, rest = layout.comparisons_md.read_text(encoding="utf-8").partition("\n")
        text = text.rstrip() + "\n\n" + heading + "\n\n" + _compare_source(run_dir) + "\n" + rest
    images = IMAGE.findall(text)
    for _, rel in images:
        if not (run_dir / rel).is_file():
            raise WorkbenchError(
                f"{run_dir / rel} (embedded in report.md) is missing: rerun `workbench run verify --out {run_dir}`"
            )

    figures = docs.parent / f"{docs.stem}_figures"
    figures.mkdir(parents=True, exist_ok=True)
    names = {rel: rel.replace("/", "__") for _, rel in images}
    for old in figures.glob("*.png"):
        if old.name not in names.values():
            old.unlink()
    for rel, name in names.items():
        shutil.copyfile(run_dir / rel, figures / name)
    body = IMAGE.sub(lambda m: f"![{m.group(1)}]({figures.name}/{names[m.group(2)]})", text)
    note = (
        f"<!-- written by `workbench publish {run_dir.name}` from that run's report.md; regenerate with "
        f"`make experiment` and `workbench publish runs/experiment` -->\n"
    )
    page = docs.read_text(encoding="utf-8") if docs.is_file() else ""
    for start, end in KEPT_BLOCKS:  # the blocks other commands own: `workbench table --docs`, notebook 09
        kept = marked_block(page, start, end)
        body = with_marked_block(body, kept, start, end) if kept else body
    atomic_write_text(docs, note + body)

    source = (
        f"Measured by `{run_command(run)}` (git commit: {commits(run)}), "
        f"{(run.get('updated') or '?')[:10]}; the full report, with figures, is [{docs.name}]"
        f"({Path(os.path.relpath(docs.resolve(), readme.resolve().parent)).as_posix()})."
    )
    block = f"{START}\n{source}\n\n{claims_table(doc['claims'])}\n{END}"
    head, rest = readme_text.split(START, 1)
    atomic_write_text(readme, head + block + rest.split(END, 1)[1])
    pages = publish_notebooks(layout, docs.parent / "notebooks")
    return [docs, figures, readme, *pages]


def publish_notebooks(layout: RunLayout, folder: Path) -> list[Path]:
    """Each executed notebook of the run as ``folder/<name>.html``; plotly figures stay interactive through one
    ``plotly.min.js`` written beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(folder / "plotly.min.js", get_plotlyjs())]
    for notebook in layout.executed_notebooks():
        written.append(atomic_write_text(folder / f"{notebook.stem}.html", notebook_html(notebook)))
    return written


def notebook_html(path: Path) -> str:
    """One executed notebook as a standalone HTML page (nbconvert's lab template; plotly outputs as plotly.js divs)."""
    import nbformat
    import plotly.io as pio
    from nbconvert import HTMLExporter  # a second's import that only publishing needs

    nb = nbformat.read(path, as_version=4)
    first = True
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get("application/vnd.plotly.v1+json")
            if figure is None:
                continue
            script = '<script src="plotly.min.js"></script>' if first else ""
            output["data"]["text/html"] = script + pio.to_html(
                pio.from_json(json.dumps(figure)), include_plotlyjs=False, full_html=False
            )
            first = False
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return EXTERNAL_SCRIPT.sub("", body)  # require.js would hide plotly.js's global; the page needs no CDN


def _compare_source(run_dir: Path) -> str:
    """Which command, commit and time made the run's comparisons.md (from run.json); a --quick comparison is refused."""
    run_json = RunLayout(run_dir).run_json
    info = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
    side, phase = info.get("side_runs", {}).get("compare", {}), info.get("phases", {}).get("compare", {})
    if phase.get("quick"):
        raise WorkbenchError(
            f"the comparison in {run_dir} is a --quick run: rerun `workbench run compare --out {run_dir}` "
            "without --quick, or delete its comparisons.md"
        )
    seeds = len(side.get("settings", {}).get("seeds") or [])
    took = f"; it took {phase['seconds']:.0f} s" if isinstance(phase.get("seconds"), (int, float)) else ""
    return (
        f"Measured by `workbench run compare --model {side.get('model', '?')} --seeds {seeds}` (git commit: "
        f"`{side.get('git_commit') or 'not recorded'}`) on {(side.get('updated') or '?')[:10]}{took}."
    )

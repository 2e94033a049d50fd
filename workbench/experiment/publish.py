"""`workbench publish`: the only writer of the README's and the docs' generated blocks.

Each block (``BLOCKS``) is a marked section of one page (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``), rendered
from one small result record committed under ``docs/records/``, never from a run folder and never typed:

====================  ===================  =======================================================
block                 page                 record (copied from the run folder by ``publish``)
====================  ===================  =======================================================
claims                README.md            claims.json (verification's, with the report's figures)
report                docs/results.md      claims.json
comparisons           docs/results.md      comparisons.json (`workbench run compare`)
tasks                 docs/results.md      tasks.json (one row per run folder published)
routing               docs/results.md      route_compare.json (`workbench run route`, rows left out)
causal                docs/causal.md       causal_summary.json (`workbench run causal`)
gpu_check             docs/performance.md  gpu_check.json (`benchmarks/gpu_check.sh` on a GPU machine)
study                 docs/studies.md      study.json (`workbench publish ... --study FILE`)
slurm_overhead        docs/studies.md      slurm_overhead.json (`benchmarks/study_overhead.py --report`)
readouts              docs/readouts.md     readouts.json (`workbench publish ... --readouts RESULT.json`)
====================  ===================  =======================================================

``publish(run_dirs, root)`` copies the records out of the run folders (the first a full run of the guide's task, whose
side phases give the comparisons, causal and routing records; every one a row of the cross-task table, replacing an
earlier row of the same task and model), the PNG figures into ``docs/results_figures/`` and the executed notebooks into
``docs/notebooks/``, then renders every block. ``stale(root)`` renders every block from the committed records and
names each one its page does not show as rendered (tests/test_docs.py fails on any).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plotly.offline import get_plotlyjs

from ..core.errors import WorkbenchError
from ..core.results import atomic_write_text, marked_block, with_marked_block
from ..routing import compare as routing_compare
from . import causal, compare, crosstask, gpu_report, readouts_page, study_page
from .layout import RunLayout
from .phases import PHASES
from .report import claims_table, commits, figure_lines, report_text, run_command

RECORDS = Path("docs") / "records"
FIGURES = Path("docs") / "results_figures"
NOTEBOOKS = Path("docs") / "notebooks"
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+\.png)\)")
EXTERNAL_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>')


def _readme_claims(record: dict) -> str:
    """The claims table, the readouts' rows folded into one line (they are in results.md and readouts.md)."""
    run = record["run"]
    readouts = [c for c in record["claims"] if c["source"] == RunLayout.readouts_summary.rel]
    rest = [c for c in record["claims"] if c not in readouts]
    judged = [c for c in readouts if c["verdict"] != "reported"]
    folded = (
        f"\nThe guide's claim 2 through each vocabulary readout of the ladder: it holds for "
        f"{sum(c['verdict'] == 'holds' for c in judged)} of {len(judged)} "
        f"({', '.join(c['claim'].rsplit('(', 1)[-1].rstrip(')') for c in judged)}); where each first reads the class "
        "and steerable × decodable: [results.md](docs/results.md), [readouts.md](docs/readouts.md).\n"
        if judged
        else ""
    )
    return (
        f"Measured by `{run_command(run)}` (git commit: {commits(run)}), {(run.get('updated') or '?')[:10]}; the full "
        f"report, with figures, is [results.md](docs/results.md).\n\n{claims_table(rest)}\n{folded}"
    )


def _report(record: dict) -> str:
    return report_text(record["claims"], record["seeds"], record["thresholds"], record["run"], record["figures"])


def _comparisons(record: dict) -> str:
    source = record["source"]
    heading, _, rest = compare.markdown(record, record["figures"]).partition("\n")
    made = f"Measured by `{source['command']}` (git commit `{source['git_commit']}`), {source['updated'][:10]}."
    return f"{heading}\n\n{made}\n{rest}"


@dataclass(frozen=True)
class Block:
    name: str
    page: str
    record: str
    render: Callable[[dict], str]
    from_runs: bool = True  # publish copies its record out of run folders (the GPU record comes from gpu_check.sh)

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    def text(self, record: dict) -> str:
        """The block with its markers, as the page holds it."""
        return f"{self.start}\n{self.render(record).strip()}\n{self.end}\n"


BLOCKS = (
    Block("claims", "README.md", "claims.json", _readme_claims),
    Block("report", "docs/results.md", "claims.json", _report),
    Block("comparisons", "docs/results.md", "comparisons.json", _comparisons),
    Block("tasks", "docs/results.md", "tasks.json", lambda r: crosstask.page_text(r["rows"], r["notes"])),
    Block("routing", "docs/results.md", "route_compare.json", routing_compare.page_text),
    Block("causal", "docs/causal.md", "causal_summary.json", causal.page_text),
    Block("gpu_check", "docs/performance.md", "gpu_check.json", gpu_report.page_text, from_runs=False),
    Block("study", "docs/studies.md", "study.json", study_page.page_text, from_runs=False),
    Block("slurm_overhead", "docs/studies.md", "slurm_overhead.json", study_page.overhead_text, from_runs=False),
    Block("readouts", "docs/readouts.md", "readouts.json", readouts_page.page_text, from_runs=False),
    Block("tuned_lens", "docs/readouts.md", "tuned_lens.json", readouts_page.tuned_text, from_runs=False),
)


def _record(root: Path, block: Block) -> dict | None:
    path = root / RECORDS / block.record
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def stale(root: str | Path = ".") -> list[str]:
    """The blocks whose page does not hold what their committed record renders to (a record without its block, or
    a block with text but no record, counts too; empty markers wait for a first record)."""
    root, found = Path(root), []
    for block in BLOCKS:
        page = root / block.page
        shown = marked_block(page.read_text(encoding="utf-8"), block.start, block.end) if page.is_file() else None
        record = _record(root, block)
        expected = f"{block.start}\n{block.end}\n" if record is None else block.text(record)
        if shown != expected and not (record is None and shown is None):
            found.append(f"{block.name} ({block.page} from {RECORDS / block.record})")
    return found


def write_pages(root: str | Path = ".") -> list[Path]:
    """Every block rendered from its record into its page (the rest of each page stays as it is)."""
    root, written = Path(root), []
    for block in BLOCKS:
        record = _record(root, block)
        if record is None:
            continue
        page = root / block.page
        text = page.read_text(encoding="utf-8") if page.is_file() else ""
        written.append(atomic_write_text(page, with_marked_block(text, block.text(record), block.start, block.end)))
    return sorted(set(written))


def _side_source(run_dir: Path, phase: str) -> dict | None:
    """How a side phase (compare, causal, route) of the run was made, from its marker (``phases/<phase>.done.json``:
    the commit it ran at, when it finished, its notebook's parameters); None when it has not finished. A --quick one
    is refused."""
    marker = RunLayout(run_dir).marker(phase)
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text(encoding="utf-8"))
    if done.get("quick"):
        raise WorkbenchError(
            f"phase {phase} of {run_dir} ran with --quick: rerun `workbench run {phase} --out {run_dir}` without it"
        )
    params = next(iter((done.get("parameters") or {}).values()), {})
    seeds = len(params.get("seeds") or [])
    return {
        "command": f"workbench run {phase} --model {params.get('model', '?')} --out {run_dir}"
        + (f" --seeds {seeds}" if seeds > 1 else ""),
        "git_commit": done.get("git_commit") or "not recorded",
        "updated": done.get("finished") or "?",
        "seconds": done.get("seconds"),
    }


def _copy_figures(lines: list[str], run_dir: Path, folder: Path, page: Path) -> tuple[list[str], set[str]]:
    """Figure lines pointing into the run folder, with each PNG copied into ``folder`` and the line pointing there
    (relative to ``page``); returns the lines and the names copied."""
    names, out = set(), []
    for line in lines:
        match = IMAGE.search(line)
        if match:
            name = match.group(2).replace("/", "__")
            shutil.copyfile(run_dir / match.group(2), folder / name)
            names.add(name)
            line = line.replace(match.group(2), f"{folder.relative_to(page.parent).as_posix()}/{name}")
        out.append(line)
    return out, names


def _guide_records(run_dir: Path, root: Path) -> dict[str, dict]:
    """The records of a full run of the guide's task: claims (with the report's figures), and those of its side
    phases that ran."""
    layout = RunLayout(run_dir)
    for path in (layout.claims, layout.report, layout.run_json):
        if not path.is_file():
            raise WorkbenchError(f"{path} not found: verify the run first with `workbench run verify --out {run_dir}`")
    claims = layout.read_claims()
    if (claims.get("run") or {}).get("quick"):
        raise WorkbenchError(
            f"{run_dir} is a --quick run: publish a full run (`make experiment`), whose numbers mean something"
        )
    sources = {phase: _side_source(run_dir, phase) for phase in ("compare", "causal", "route")}  # refusals first
    figures = root / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    page = root / "docs" / "results.md"
    lines, kept = _copy_figures(figure_lines(run_dir, claims["seeds"]), run_dir, figures, page)
    records = {"claims.json": {**claims, "figures": lines}}
    source = sources["compare"]
    if source and layout.comparisons.is_file():
        doc = json.loads(layout.comparisons.read_text(encoding="utf-8"))
        lines, names = _copy_figures(compare.figure_lines(run_dir), run_dir, figures, page)
        kept |= names
        records["comparisons.json"] = {**doc, "figures": lines, "source": source}
    source = sources["causal"]
    if source and layout.causal_summary.is_file():
        records["causal_summary.json"] = {**json.loads(layout.causal_summary.read_text(encoding="utf-8")),
                                          "source": source}  # fmt: skip
    source = sources["route"]
    if source and layout.route_compare.is_file():
        doc = json.loads(layout.route_compare.read_text(encoding="utf-8"))
        results = [{k: v for k, v in r.items() if k != "rows"} for r in doc["results"]]  # per prompt: in the run
        records["route_compare.json"] = {**doc, "results": results, "source": source}
    for old in figures.glob("*.png"):
        if old.name not in kept:
            old.unlink()
    return records


def publish(
    run_dirs: list[str | Path], root: str | Path = ".", notes: list[str] | None = None, extra: dict | None = None
) -> list[Path]:
    """Copy the records of ``run_dirs`` into ``root/docs/records/`` (see the module doc) and render every block; the
    first run's executed notebooks go to ``docs/notebooks/``. ``extra``: more records by file name (a study's).
    Bad input is one line, checked before anything is written."""
    root, run_dirs = Path(root), [Path(d) for d in run_dirs]
    if not run_dirs:
        raise WorkbenchError("name at least one run folder: `workbench publish runs/experiment [runs/TASK ...]`")
    for page in {b.page for b in BLOCKS if b.from_runs or (root / RECORDS / b.record).is_file()}:
        if not (root / page).is_file():
            raise WorkbenchError(f"{root / page} not found: publish from the repository's root (or pass --root)")
    rows = [crosstask.task_row(d) for d in run_dirs]
    records = _guide_records(run_dirs[0], root)
    tasks_path = root / RECORDS / "tasks.json"
    tasks = json.loads(tasks_path.read_text(encoding="utf-8")) if tasks_path.is_file() else {"rows": [], "notes": []}
    for row in rows:
        tasks["rows"] = [r for r in tasks["rows"] if (r["task"], r["model"]) != (row["task"], row["model"])] + [row]
    records["tasks.json"] = {"rows": tasks["rows"], "notes": notes if notes is not None else tasks["notes"]}
    records.update(extra or {})
    (root / RECORDS).mkdir(parents=True, exist_ok=True)
    written = [
        atomic_write_text(root / RECORDS / name, json.dumps(doc, indent=1) + "\n") for name, doc in records.items()
    ]
    written += write_pages(root)
    written += publish_notebooks(RunLayout(run_dirs[0]), root / NOTEBOOKS)
    return written


def publish_notebooks(layout: RunLayout, folder: Path) -> list[Path]:
    """Each executed notebook of a phase the run finished as ``folder/<name>.html`` (one still running is left out);
    plotly figures stay interactive through one ``plotly.min.js`` written beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    status = layout.read_run().get("phases")
    done = {
        step.notebook.name
        for name, phase in PHASES.items()
        for step in phase.steps
        if status is None or any(k.split(".")[0] == name and p.get("status") == "done" for k, p in status.items())
    }
    written = [atomic_write_text(folder / "plotly.min.js", get_plotlyjs())]
    for notebook in (n for n in layout.executed_notebooks() if n.name in done):
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

"""`workbench publish` on run folders written here: the records go to docs/records/, the figures they name to
docs/results_figures/, every block of every page is rendered from the records alone (the rest of each page stays),
`stale` names a block whose page differs from its record, and bad input is one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli
from test_verify import GOOD, make_run

from workbench.core.errors import WorkbenchError
from workbench.core.results import marked_block
from workbench.experiment import causal
from workbench.experiment import claims as verification
from workbench.experiment.publish import BLOCKS, RECORDS, publish, stale, write_pages

RUN = {"model": "default", "quick": False, "settings": {"quick": False, "seeds": [42]}, "git_commit": "0123abc",
       "updated": "2026-12-07T10:00", "phases": {"generate": {"status": "done", "seconds": 90, "git_commit": "0123abc"}}}  # fmt: skip


def _row(top1, recovered):
    return {"lens": {"top1": top1, "collapse": 0.25}, "state_patch": {"recovered": recovered}}


def _run(root: Path, quick: bool = False, causal_quick: bool = False) -> Path:
    """A verified run folder with one seed's figure and a causal side phase."""
    make_run(root, {42: GOOD})
    data = verification.collect(root)
    claims = verification.judge(data)
    run = {**RUN, "quick": quick}
    (root / "claims.json").write_text(
        json.dumps(verification.claims_document(data, claims, verification.thresholds(), run))
    )
    (root / "report.md").write_text("# the run's own report\n")
    (root / "seed-42").mkdir(exist_ok=True)
    (root / "seed-42" / "phase1_losses.png").write_bytes(b"\x89PNG")
    summary = causal.summarise({"vo": [_row(1.0, 0.4)], "qk": [_row(0.7, 0.2)]})
    (root / "causal_summary.json").write_text(json.dumps(
        {"summary": summary, "claims": causal.verdicts(summary), "model": "m", "layer": 2, "n_pairs": 6,
         "n_prompts": 8, "seeds": [42]}))  # fmt: skip
    phases = {**RUN["phases"], "causal": {"status": "done", "seconds": 60, "quick": causal_quick}}
    side = {"causal": {"model": "default", "settings": {"seeds": [42]}, "git_commit": "4567def", "updated": "2026-12-07T11:00"}}  # fmt: skip
    (root / "run.json").write_text(json.dumps({**run, "phases": phases, "side_runs": side}))
    params = {"08_is_the_classifier_used.ipynb": {"model": "default", "seeds": [42]}}
    marker = {"finished": "2026-12-07T11:00:00+00:00", "seconds": 60, "quick": causal_quick, "git_commit": "4567def",
              "parameters": params}  # fmt: skip
    (root / "phases").mkdir(exist_ok=True)
    (root / "phases" / "causal.done.json").write_text(json.dumps(marker))
    return root


@pytest.fixture
def site(tmp_path):
    """A repository's pages: text around where the blocks go, no blocks yet."""
    (tmp_path / "docs" / "results_figures").mkdir(parents=True)
    (tmp_path / "README.md").write_text("# Title\n\nbefore\n")
    (tmp_path / "docs" / "results.md").write_text("# Results\n")
    (tmp_path / "docs" / "causal.md").write_text("# Causal\n\nprose\n")
    (tmp_path / "docs" / "results_figures" / "stale.png").write_bytes(b"old")
    return tmp_path


def test_publish_writes_the_records_and_renders_every_block_from_them(site, tmp_path):
    run = _run(tmp_path / "runs" / "r1")
    publish([run], site)
    records = site / RECORDS
    assert sorted(p.name for p in records.iterdir()) == ["causal_summary.json", "claims.json", "tasks.json"]
    claims = json.loads((records / "claims.json").read_text())
    assert claims["claims"] == json.loads((run / "claims.json").read_text())["claims"]
    assert "![Phase 1 losses (seed 42)](results_figures/seed-42__phase1_losses.png)" in claims["figures"]
    assert (site / "docs" / "results_figures" / "seed-42__phase1_losses.png").read_bytes() == b"\x89PNG"
    assert not (site / "docs" / "results_figures" / "stale.png").exists()
    readme = (site / "README.md").read_text()
    assert readme.startswith("# Title\n\nbefore\n") and "(git commit: `0123abc`)" in readme
    assert "| Base model: no vocabulary-aligned" in readme and "[results.md](docs/results.md)" in readme
    results = (site / "docs" / "results.md").read_text()
    assert results.startswith("# Results\n") and "the run's own report" not in results  # rendered, not copied
    assert "## Claims" in results and "results_figures/seed-42__phase1_losses.png" in results
    assert "| arithmetic | default |" in results  # the run's row of the cross-task table
    page = (site / "docs" / "causal.md").read_text()
    assert page.startswith("# Causal\n\nprose\n") and "Made by `workbench run causal --model default --out" in page
    assert "(git commit `4567def`), 2026-12-07." in page
    assert stale(site) == []
    assert (site / "docs" / "notebooks" / "plotly.min.js").is_file()


def test_stale_names_the_block_whose_page_differs_from_its_record(site, tmp_path):
    publish([_run(tmp_path / "runs" / "r1")], site)
    assert stale(site) == []
    record = site / RECORDS / "causal_summary.json"
    doc = json.loads(record.read_text())
    doc["layer"] = 3  # a record changed after its page was rendered
    record.write_text(json.dumps(doc))
    assert stale(site) == ["causal (docs/causal.md from docs/records/causal_summary.json)"]
    write_pages(site)
    assert stale(site) == [] and "classifier layer 3" in (site / "docs" / "causal.md").read_text()
    readme = site / "README.md"
    readme.write_text(readme.read_text().replace("**holds**", "**fails**", 1))  # a page edited by hand
    assert stale(site) == ["claims (README.md from docs/records/claims.json)"]
    block = next(b for b in BLOCKS if b.name == "claims")
    assert marked_block(readme.read_text(), block.start, block.end) is not None


def test_a_task_run_replaces_its_own_row_and_keeps_the_others(site, tmp_path):
    run = _run(tmp_path / "runs" / "r1")
    publish([run], site, notes=["a note"])
    other = _run(tmp_path / "runs" / "r2")
    doc = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**doc, "settings": {**doc["settings"], "task": "sentiment"}}))
    publish([run, other], site)
    tasks = json.loads((site / RECORDS / "tasks.json").read_text())
    assert [r["task"] for r in tasks["rows"]] == ["arithmetic", "sentiment"] and tasks["notes"] == ["a note"]
    publish([run], site)  # again: the arithmetic row is replaced, sentiment's kept
    assert [r["task"] for r in json.loads((site / RECORDS / "tasks.json").read_text())["rows"]] == [
        "sentiment",
        "arithmetic",
    ]


def test_bad_input_is_one_line_and_writes_nothing(site, tmp_path, capsys):
    code, _, err = cli(capsys, "publish", tmp_path / "nothing", "--root", site)
    assert_one_line_error(code, err, "is not a run folder")
    code, _, err = cli(capsys, "publish", _run(tmp_path / "runs" / "quick", quick=True), "--root", site)
    assert_one_line_error(code, err, "is a --quick run")
    with pytest.raises(WorkbenchError, match="phase causal of .* ran with --quick"):
        publish([_run(tmp_path / "runs" / "cq", causal_quick=True)], site)
    (site / "docs" / "causal.md").unlink()
    with pytest.raises(WorkbenchError, match="causal.md not found: publish from the repository's root"):
        publish([_run(tmp_path / "runs" / "r1")], site)
    assert not (site / RECORDS).exists() and (site / "README.md").read_text() == "# Title\n\nbefore\n"

"""Notebook 09 (virtual experts) under papermill on the tiny random Llama, with tiny parameters: it writes the router
comparison it promises (one result per router), its three figures, and a closing paragraph that is exactly what
``routing.compare.findings`` makes of the saved JSON. The lens router needs a trained adapter, so it is left out
(the notebook says it is skipped); neural is left out for time (it generates a few-shot decision per prompt).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat
import pytest
from helpers import closing_markdown

from workbench.core.results import read_result
from workbench.routing.compare import findings, router_table, table_markdown

papermill = pytest.importorskip("papermill")

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NAME = "09_virtual_experts.ipynb"
ROUTERS = ["regex", "probe"]
PER_KIND = 4
FIGURES = ("accuracy_latency", "confusion", "by_kind")


def _markdown_outputs(nb) -> list[str]:
    return [
        o["data"]["text/markdown"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "text/markdown" in o.get("data", {})
    ]


@pytest.fixture(scope="module")
def executed(tmp_path_factory, request, tiny_dir):
    out = tmp_path_factory.mktemp("virtual-experts")
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("OMP_NUM_THREADS", "1")
    # papermill warns for every parameter-cell line it cannot describe; the values still work
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    papermill.execute_notebook(
        str(ROOT / "notebooks" / NAME),
        str(out / NAME),
        parameters={
            "model": str(tiny_dir),
            "output_dir": str(out),
            "per_kind": PER_KIND,
            "routers": ROUTERS + ["lens"],
            "seeds": [42],
            "max_new_tokens": 2,
        },
        kernel_name="python3",
        cwd=str(ROOT),
        progress_bar=False,
        extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
    )
    return out, nbformat.read(out / NAME, as_version=4)


def test_comparison_json_has_one_result_per_router(executed):
    out, _ = executed
    doc = read_result(out / "route_compare.json")
    assert doc["kind"] == "route.compare" and doc["schema_version"] >= 1
    assert [r["router"]["router"] for r in doc["results"]] == ROUTERS  # lens asked for, skipped: no adapters
    settings = doc["settings"]
    assert settings["notebook"] == NAME and settings["routers"] == ROUTERS and settings["adapters"] == []
    assert settings["per_kind"] == PER_KIND and settings["seeds"] == [42] and settings["negatives_task"] is None
    assert settings["layer"] == 2 and settings["n_layers"] == 4
    assert settings["n_items"] == 3 * PER_KIND + 20  # three arithmetic kinds and half of the 40 built-in negatives
    assert doc["full_forward_s"]["n"] == settings["n_items"] * len(ROUTERS)  # one beside every decision
    for result in doc["results"]:
        assert len(result["rows"]) == settings["n_items"]
        counts = result["metrics"]["confusion"]["counts"]
        assert sum(map(sum, counts)) == settings["n_items"]
    assert doc["results"][1]["seed"] == 42 and doc["results"][0]["seed"] is None


def test_closing_paragraph_is_findings_of_the_saved_json(executed):
    out, nb = executed
    doc = read_result(out / "route_compare.json")
    found = closing_markdown(nb)
    assert found == findings(doc)
    assert "early-exit probe router" in found and "regex answers" in found
    shown = _markdown_outputs(nb)
    assert table_markdown(router_table(doc)) in shown  # the table shown is the saved JSON's
    assert any("lens router is skipped" in text for text in shown)


def test_figures_are_written(executed):
    out, _ = executed
    for figure in FIGURES:
        assert (out / f"route_compare_{figure}.html").is_file(), figure
    assert (out / "plotly.min.js").is_file()

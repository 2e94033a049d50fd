"""PNG export, the one place the suite starts Chromium for a figure (conftest turns PNG export off everywhere else):
a figure written with PNG export on gets a real PNG of the size asked for beside its HTML; with $WORKBENCH_PNG=0 it
gets none."""

from __future__ import annotations

import struct

import plotly.graph_objects as go
import pytest

from workbench.ui import figure_export, plots


def _figure() -> go.Figure:
    return go.Figure(go.Bar(x=["multiply", "add"], y=[0.9, 0.1]), layout={"height": 300, "title": "lens"})


def test_png_export_off_writes_html_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PNG", "0")
    assert figure_export.chromium() is None
    figure_export.write_figure(_figure(), tmp_path / "fig.html")
    assert (tmp_path / "fig.html").is_file() and not (tmp_path / "fig.png").exists()


def test_notebooks_reach_the_export_through_plots():
    names = ("chromium", "show", "start_png_export", "write_figure", "write_png")
    assert all(getattr(plots, name) is getattr(figure_export, name) for name in names)


@pytest.mark.slow  # starts a headless Chromium (seconds)
def test_a_figure_gets_a_png_of_the_asked_size_through_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PNG", "1")
    if figure_export.chromium() is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's)")
    figure_export.write_figure(_figure(), tmp_path / "fig.html")
    data = (tmp_path / "fig.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1100, 300)  # write_png's width, the figure's own height

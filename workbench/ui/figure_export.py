"""Figures as files, written atomically: HTML that opens offline (plotly.js written once per folder) and, when a
Chromium is found, a PNG beside it through kaleido."""

from __future__ import annotations

import atexit
import os
import shutil
import warnings
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from ..core.results import atomic_write_bytes, atomic_write_text


def write_figure(fig: go.Figure, path: str | Path, png: bool | None = None) -> Path:
    """HTML that opens offline: plotly.js is written once per folder (plotly.min.js) and referenced, so each figure
    is kilobytes, not megabytes. Also a PNG beside it (same name, ``.png``) when ``png`` is true, or when it is None
    and a Chromium is found (see ``chromium``). Written atomically."""
    path = Path(path)
    bundle = path.parent / "plotly.min.js"
    if not bundle.is_file():
        atomic_write_text(bundle, get_plotlyjs())
    atomic_write_text(path, fig.to_html(include_plotlyjs="directory", full_html=True))
    if png or (png is None and chromium()):
        write_png(fig, path.with_suffix(".png"))
    return path


def show(fig: go.Figure, path: str | Path) -> go.Figure:
    """Write the figure (``write_figure``) and return it, so a notebook cell ends with ``plots.show(fig, path)``."""
    write_figure(fig, path)
    return fig


def chromium() -> str | None:
    """The Chromium kaleido renders PNGs with: $BROWSER_PATH, else chromium / chromium-browser / google-chrome on PATH;
    None when there is none or $WORKBENCH_PNG is 0."""
    if os.environ.get("WORKBENCH_PNG", "auto").strip().lower() in ("0", "no", "false", "off"):
        return None
    for candidate in (
        os.environ.get("BROWSER_PATH"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


_PNG_SERVER: list[bool] = []  # one kaleido browser per process, started once, closed at exit


def start_png_export() -> bool:
    """Start the process's kaleido server (a headless Chromium) in the background and return at once; False when no
    Chromium is found or $WORKBENCH_PNG is 0. The browser takes seconds to start (2 s on the 2-core machine, most of a
    PNG's cost), so a command that will write a PNG calls this before its slow work, and the start overlaps it; the
    first ``write_png`` then waits only for what is left. Idempotent; ``write_png`` calls it too."""
    browser = chromium()
    if browser is None:
        return False
    if not _PNG_SERVER:
        import kaleido  # only when a PNG is asked for: it drives a headless Chromium

        os.environ.setdefault("BROWSER_PATH", browser)
        # mathjax=False: the figures have no LaTeX, and kaleido would otherwise put MathJax from a CDN in its page
        kaleido.start_sync_server(silence_warnings=True, mathjax=False)  # the browser opens in kaleido's thread
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        _PNG_SERVER.append(True)
    return True


def write_png(fig: go.Figure, path: str | Path, width: int = 1100) -> Path:
    """A static PNG through kaleido (a headless Chromium it keeps open for the process; it exits with the process)."""
    if not start_png_export():
        raise RuntimeError("no Chromium found for PNG export: install chromium (apt) or set BROWSER_PATH")
    height = int(fig.layout.height) if fig.layout.height else 550
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotly: "kopts ignored when using a server"
        data = fig.to_image(format="png", width=width, height=height)
    return atomic_write_bytes(path, data)

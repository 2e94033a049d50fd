"""The layer explorer in a real browser: notebook 06 served by Voila, driven by Playwright in Debian's headless
Chromium (never a downloaded browser). Typing a prompt and moving the layer slider must make the page show what the
Python API computes for that prompt and layer. A screenshot and the measured latencies go to test-artifacts/.
"""

from __future__ import annotations

import html
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from workbench.explore import serve
from workbench.widgets import LensView

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = os.environ.get("BROWSER_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("WORKBENCH_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPT = "12 * 5 = "

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page():
    with serve("default", check_xsrf=False) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            # offline: nothing but the loopback server (the lab template asks a CDN for fonts)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page.goto(url, timeout=120_000)
            page.wait_for_selector(".wb-top-token code.wb-top", timeout=180_000)
            yield page
            kernel = page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
            page.evaluate(f"fetch('{url}voila/api/shutdown/{kernel}', {{method: 'POST'}})")
        finally:
            browser.close()


@pytest.fixture(scope="module")
def lens():
    from workbench.models import load_model

    return LensView(load_model("default"), TARGETS)


def _shown(page) -> str:
    return page.inner_text(".wb-top-token")


def _wait_for(page, text: str, timeout: float = 60.0) -> float:
    """Seconds until the top-token line contains ``text``."""
    start = time.perf_counter()
    page.wait_for_function("t => document.querySelector('.wb-top-token').innerText.includes(t)", arg=text,
                           timeout=timeout * 1000, polling=10)
    return time.perf_counter() - start


def _figure(page) -> dict:
    """The trajectory figure as plotly holds it in the page: the chosen-layer line and the first trace's y values."""
    return page.evaluate("""() => {
        const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.layout && g.layout.shapes && g.data.length > 1);
        return {x0: gd.layout.shapes[0].x0, y: Array.from(gd.data[0].y), name: gd.data[0].name};
    }""")


def test_prompt_and_slider_show_what_the_api_computes(page, lens):
    start_layer = lens.lm.classifier_layer
    assert f"layer {start_layer}" in _shown(page)
    page.fill(".wb-prompt textarea", PROMPT)
    page.click("button.wb-run")
    _wait_for(page, repr(PROMPT))
    expected = lens.at(PROMPT, start_layer)
    assert f"top token {expected['top'][0]['token']!r}" in _shown(page)
    figure = _figure(page)
    assert figure["x0"] == start_layer and figure["name"] == TARGETS[0]
    assert figure["y"] == pytest.approx(lens.trajectory(PROMPT)["probs"][TARGETS[0]], rel=1e-4)

    handle = page.locator(".wb-layer .noUi-handle")
    latencies = []
    for layer in range(start_layer + 1, start_layer + 6):
        handle.focus()
        page.keyboard.press("ArrowRight")
        latencies.append(_wait_for(page, f"layer {layer} ·"))
        got = lens.at(PROMPT, layer)
        assert f"top token {got['top'][0]['token']!r}" in _shown(page), (layer, _shown(page))
        cells = page.inner_text(".wb-tables")
        assert html.unescape(f"{got['targets']['multiply']['prob']:.2e}") in cells
    assert _figure(page)["x0"] == start_layer + 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layer_explorer.png"), full_page=True)
    (ARTIFACTS / "layer_explorer_latency.json").write_text(json.dumps(
        {"slider_to_view_ms": [round(1000 * s, 1) for s in latencies],
         "median_ms": round(1000 * statistics.median(latencies), 1)}, indent=2))
    assert (ARTIFACTS / "layer_explorer.png").stat().st_size > 10_000

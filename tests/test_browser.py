"""The layer explorer in a real browser: notebook 06 served by Voila, driven by Playwright in Debian's headless
Chromium (never a downloaded browser). Typing a prompt and moving the layer slider must make the page show what the
Python API computes for that prompt and layer. A screenshot and the measured latencies go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

from workbench.ui.explorer import _descendants, serve
from workbench.ui.widgets import LensView

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = os.environ.get("BROWSER_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("WORKBENCH_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPT = "12 * 5 = "

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def _alive(pids: list[int]) -> list[int]:
    """The pids still running (zombies waiting to be reaped do not count)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.fixture(scope="module")
def page():
    server_pids: list[int] = []
    with serve("default", check_xsrf=False) as (url, server), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        server_pids += [server.pid]
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            # offline: nothing but the loopback server (the lab template asks a CDN for fonts)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page.goto(url, timeout=120_000)
            page.wait_for_selector(".wb-top-token code.wb-top", timeout=180_000)
            server_pids += _descendants(server.pid)  # the kernel this page started
            assert len(server_pids) > 1
            yield page
            kernel = page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
            page.evaluate(f"fetch('{url}voila/api/shutdown/{kernel}', {{method: 'POST'}})")
        finally:
            browser.close()
    assert _alive(server_pids) == [], "Voila or one of its kernels outlived the test"


@pytest.fixture(scope="module")
def lens():
    from workbench.core.models import load_model

    return LensView(load_model("default"), TARGETS)


def _shown(page) -> str:
    return page.inner_text(".wb-top-token")


def _wait_for(page, text: str, timeout: float = 60.0) -> float:
    """Seconds until the top-token line contains ``text``."""
    start = time.perf_counter()
    page.wait_for_function(
        "t => document.querySelector('.wb-top-token').innerText.includes(t)",
        arg=text,
        timeout=timeout * 1000,
        polling=10,
    )
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
        page.wait_for_function(
            "t => document.querySelector('.wb-tables').innerText.includes(t)",
            arg=f"{got['targets']['multiply']['prob']:.2e}",
            timeout=30_000,
        )
    assert _figure(page)["x0"] == start_layer + 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layer_explorer.png"), full_page=True)
    (ARTIFACTS / "layer_explorer_latency.json").write_text(
        json.dumps(
            {
                "slider_to_view_ms": [round(1000 * s, 1) for s in latencies],
                "median_ms": round(1000 * statistics.median(latencies), 1),
            },
            indent=2,
        )
    )
    assert (ARTIFACTS / "layer_explorer.png").stat().st_size > 10_000


def test_workbench_explore_serves_and_stops_on_ctrl_c(tmp_path):
    """`workbench explore` (what `make explore` runs): the page is served on loopback, and Ctrl-C stops Voila and
    its kernels, leaving nothing behind — even when the command inherited SIGINT ignored (CI once hung on that)."""
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from workbench.ui.explorer import free_port

    port = free_port()
    # started the way a shell starts a background job (`cmd &`, CI scripts): with SIGINT ignored, which exec keeps
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "explore", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "workbench explore did not serve"
                time.sleep(0.3)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120).read().decode()
        assert "jupyter-config-data" in page and "Layer explorer" in page
        children = _descendants(proc.pid)
        assert children  # voila (and the kernel the page load started)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say what is still running: the command itself, or what holds its output
            left = {pid: _cmdline(pid) for pid in _alive(children + _descendants(proc.pid))}
            pytest.fail(
                f"workbench explore {'exited ' + str(proc.returncode) if proc.poll() is not None else 'still runs'} "
                f"60 s after Ctrl-C; still alive from its tree: {left}"
            )
        assert proc.returncode == 130 and "http://127.0.0.1:" in out
        deadline = time.monotonic() + 15
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(children) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)

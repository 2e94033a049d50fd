"""The layer explorer in a real browser: notebook 06 served by Voila, driven by Playwright in Debian's headless
Chromium (never a downloaded browser), at 1280x800. Typing a prompt and moving the layer slider must make the page show
what the Python API computes for that prompt and layer; each view tab must draw what the API computes, the controls
and the views must sit side by side on one screen, and the steering slider must update the steered view (no
generation). Screenshots and the measured latencies go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

from workbench.ui import lens_figures
from workbench.ui import lens_views as lv
from workbench.ui.explorer import _descendants, serve
from workbench.ui.lens_view import LensView

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
            page = browser.new_page(viewport={"width": 1280, "height": 800})
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
def lens(smol):
    return LensView(smol, TARGETS)


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


def _plot(page, css: str) -> dict | None:
    """The figure of the view ``css`` (its Output's class) as plotly holds it in the page: each trace's name, y and
    text, the first shape and the y axis; None while it is not drawn."""
    return page.evaluate(
        """css => {
        const gd = document.querySelector(`${css}.js-plotly-plot, ${css} .js-plotly-plot`);
        if (!gd || !gd.data || !gd._fullLayout) return null;
        const list = v => (v == null ? null : Array.from(v, r => (r && r.length !== undefined && typeof r !== 'string' ? Array.from(r) : r)));
        return {
            traces: gd.data.map(d => ({name: d.name, y: list(d.y), text: list(d.text)})),
            shape: gd.layout.shapes && gd.layout.shapes[0],
            yaxis: {type: gd._fullLayout.yaxis.type, range: Array.from(gd._fullLayout.yaxis.range)},
        };
    }""",
        css,
    )


def _eventually(read, check, timeout: float = 60.0):
    """``read()`` until ``check`` accepts it (the page draws a figure after the label that announces it)."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        try:
            if got is not None and check(got):
                return got
        except (AssertionError, TypeError, KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed it; last seen: {str(got)[:500]}")
        time.sleep(0.05)


def _figure(page) -> dict:
    """The probability figure: the chosen-layer line and the first trace's y values."""
    got = _eventually(lambda: _plot(page, ".wb-prob-fig"), lambda p: p["traces"][0]["y"][0] is not None)
    return {"x0": got["shape"]["x0"], "y": got["traces"][0]["y"], "name": got["traces"][0]["name"]}


def _tab(page, name: str) -> None:
    page.locator(".wb-views .lm-TabBar-tab", has_text=name).first.click()


def test_prompt_and_slider_show_what_the_api_computes(page, lens):
    start_layer = lens.lm.classifier_layer
    assert f"layer {start_layer}" in _shown(page)
    page.fill(".wb-prompt textarea", PROMPT)
    page.click("button.wb-run")
    _wait_for(page, repr(PROMPT))
    expected = lens.at(PROMPT, start_layer)
    assert f"top token {expected['top'][0]['token']!r}" in _shown(page)
    want = lens.trajectory(PROMPT)["probs"][TARGETS[0]]
    figure = _eventually(lambda: _figure(page), lambda f: f["y"] == pytest.approx(want, rel=1e-4))
    assert figure["x0"] == start_layer and figure["name"] == TARGETS[0]

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
    _eventually(lambda: _figure(page), lambda f: f["x0"] == start_layer + 5)
    # the readout switch: Patchscope's top token at this layer, then the logit lens's again
    patchscope = LensView(lens.lm, TARGETS)
    patchscope.use("patchscope")
    page.select_option(".wb-readout select", label="patchscope")
    _wait_for(page, f"top token {patchscope.at(PROMPT, start_layer + 5)['top'][0]['token']!r}")
    want = patchscope.trajectory(PROMPT)["probs"][TARGETS[0]]
    _eventually(lambda: _figure(page), lambda f: f["y"] == pytest.approx(want, rel=1e-4))
    page.select_option(".wb-readout select", label="logit")
    _wait_for(page, f"top token {lens.at(PROMPT, start_layer + 5)['top'][0]['token']!r}")
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


def test_views_fit_one_screen_render_and_steering_follows_its_slider(page, lens):
    """At 1280x800 the controls and the views sit side by side on one screen; the rank, top-token, KL and steering
    tabs draw what the API computes; a steering slider step redraws the steered lens without generating."""
    from workbench.causal.steering import direction_from, median_resid_norm

    if repr(PROMPT) not in _shown(page):  # run alone: the first test typed the prompt
        page.fill(".wb-prompt textarea", PROMPT)
        page.click("button.wb-run")
        _wait_for(page, repr(PROMPT))
    page.evaluate("document.querySelector('.wb-explorer').scrollIntoView()")
    box = page.evaluate("""() => Object.fromEntries(['.wb-explorer', '.wb-controls', '.wb-views'].map(
        s => { const b = document.querySelector(s).getBoundingClientRect(); return [s, [b.left, b.top, b.right, b.bottom]]; }))""")
    controls, views = box[".wb-controls"], box[".wb-views"]
    assert views[0] >= controls[2] - 1 and abs(views[1] - controls[1]) < 10, box  # side by side, tops aligned
    assert max(controls[3], views[3]) <= 800 and controls[2] - controls[0] < 0.4 * 1280, box  # one screen
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layer_explorer_screen.png"))

    trajectory = lens.trajectory(PROMPT)
    _tab(page, "rank")
    ranks = _eventually(
        lambda: _plot(page, ".wb-rank-fig"),
        lambda p: [t["y"] for t in p["traces"]] == [trajectory["ranks"][w] for w in TARGETS],
    )
    assert ranks["yaxis"]["type"] == "log" and ranks["yaxis"]["range"][0] > ranks["yaxis"]["range"][1]  # 1 on top

    _tab(page, "top tokens")
    cells = [[lens_figures.cell_text(t) for t in row] for row in lens.grid(PROMPT)["tokens"]]
    _eventually(lambda: _plot(page, ".wb-grid"), lambda p: p["traces"][0]["text"] == cells)
    page.screenshot(path=str(ARTIFACTS / "layer_explorer_grid.png"))

    _tab(page, "KL vs base")  # no run folder here: no adapter
    page.wait_for_function(
        "() => document.querySelector('.wb-kl-note').innerText.includes('Load an adapter')", timeout=30_000
    )

    _tab(page, "steering")
    page.wait_for_function(
        "() => document.querySelector('.wb-steer-info').innerText.includes('strength +0.00')", timeout=60_000
    )
    layer = lens.lm.classifier_layer  # the steered layer starts at the explorer's layer
    unit = direction_from("unembed:multiply", lens.lm, layer).unit
    norm = median_resid_norm(lens.lm, [PROMPT], layer)
    handle = page.locator(".wb-steer-strength .noUi-handle")
    latencies, kernel_ms = [], []  # key press to updated page; the kernel's share (the view's own timing)
    for strength in (0.25, 0.5):
        handle.focus()
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "t => document.querySelector('.wb-steer-info').innerText.includes(t)",
            arg=f"strength {strength:+.2f}",
            timeout=60_000,
            polling=10,
        )
        latencies.append(time.perf_counter() - start)
        info = page.inner_text(".wb-steer-info")
        kernel_ms.append(float(info.split("computed in ", 1)[1].split(" ms", 1)[0]))
        want = lv.steered_lens(lens.lm, PROMPT, layer, strength * norm * unit, lens.target_ids)["probs"][:, 0].tolist()
        _eventually(
            lambda: _plot(page, ".wb-steer-fig"),
            lambda p, want=want: (
                p["traces"][0]["y"] == pytest.approx(want, rel=1e-3)
                and p["traces"][1]["y"] == pytest.approx(trajectory["probs"][TARGETS[0]], rel=1e-4)
            ),
        )
    assert "press" in page.inner_text(".wb-steer-answers")  # nothing generated on the way
    page.screenshot(path=str(ARTIFACTS / "layer_explorer_steering.png"))
    (ARTIFACTS / "layer_explorer_steering_latency.json").write_text(
        json.dumps(
            {"steering_slider_to_view_ms": [round(1000 * s, 1) for s in latencies], "kernel_compute_ms": kernel_ms},
            indent=2,
        )
    )
    page.click("button.wb-steer-generate")
    page.wait_for_function(
        "() => document.querySelector('.wb-steer-answers').innerText.includes('steered')", timeout=120_000
    )


def test_workbench_explore_serves_and_stops_on_ctrl_c(tiny_dir):
    """`workbench explore` (what `make explore` runs), on the tiny model: the page is served on loopback, and Ctrl-C
    stops Voila and its kernels, leaving nothing behind — even when the command inherited SIGINT ignored (CI once hung
    on that)."""
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from workbench.ui.explorer import free_port

    port = free_port()
    # started the way a shell starts a background job (`cmd &`, CI scripts): with SIGINT ignored, which exec keeps
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "explore", "--model", str(tiny_dir), "--port", str(port)],
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

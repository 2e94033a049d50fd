"""The layer explorer, driven from Python on the tiny random Llama: what it shows equals the lens computed directly,
a slider move reuses the cached forward pass, a new prompt runs one, and the model switch shows each adapter or all.
"""

from __future__ import annotations

import html
import math

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.lens import logit_lens
from workbench.ui.lens_figures import FIG_HEIGHT
from workbench.ui.lens_view import LensView
from workbench.ui.widgets import (
    BASE,
    BOTH,
    TAB_GRID,
    TAB_KL,
    TAB_PROBE,
    TAB_PROBS,
    TAB_RANKS,
    TAB_STEER,
    LayerExplorer,
    _prompt_lines,
)

pytest.importorskip("ipywidgets")
TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPTS = ["7 * 8 = ", "23 + 45 = "]


def test_lens_view_equals_the_logit_lens(tiny_lm):
    view = LensView(tiny_lm, TARGETS)
    for layer in range(tiny_lm.n_layers):
        direct = logit_lens(tiny_lm, PROMPTS, TARGETS, layer=layer).results
        for prompt, expected in zip(PROMPTS, direct):
            got = view.at(prompt, layer)  # default position: the last token, as the lens reads
            assert got["top"][0]["token_id"] == expected.top_token_id
            assert got["top"][0]["prob"] == pytest.approx(expected.top_prob, rel=1e-4)
            for word in TARGETS:
                assert got["targets"][word]["prob"] == pytest.approx(expected.target_probs[word], rel=1e-4)
                assert got["targets"][word]["rank"] == expected.target_ranks[word]
    assert view.forward_passes == len(PROMPTS)  # every layer came from one cached pass per prompt


def test_trajectory_is_the_lens_at_every_layer_and_positions_differ(tiny_lm):
    view = LensView(tiny_lm, TARGETS)
    traj = view.trajectory(PROMPTS[0], position=2)
    for layer in range(tiny_lm.n_layers):
        at = view.at(PROMPTS[0], layer, position=2)
        for word in TARGETS:
            assert traj["probs"][word][layer] == pytest.approx(at["targets"][word]["prob"], rel=1e-5)
            assert traj["ranks"][word][layer] == at["targets"][word]["rank"]
    assert view.at(PROMPTS[0], 1, position=0)["top"] != view.at(PROMPTS[0], 1, position=-1)["top"]
    with pytest.raises(WorkbenchError, match="position 99 is outside"):
        view.at(PROMPTS[0], 1, position=99)
    with pytest.raises(WorkbenchError, match="layer 4 is out of range"):
        view.at(PROMPTS[0], 4)


def test_slider_reuses_the_cache_and_the_view_follows(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1)
    view = ex.views[BASE]
    assert view.forward_passes == 1 and ex.prompt == PROMPTS[0]
    assert ex.position_pick.value == len(tiny_lm.token_ids(PROMPTS[0])) - 1
    for layer in (0, 3, 2):
        ex.layer_slider.value = layer
        expected = view.at(PROMPTS[0], layer)
        assert ex.current[BASE] == expected
        assert ex.trajectory_fig.layout.shapes[0].x0 == layer == ex.trajectory_fig.layout.shapes[0].x1
        assert (
            f"layer {layer}" in ex.top_token.value
            and html.escape(repr(expected["top"][0]["token"])) in ex.top_token.value
        )
        assert ex.last_update_ms is not None  # the update was timed
    assert view.forward_passes == 1  # moving the slider never reruns the model
    traj = view.trajectory(PROMPTS[0])
    shown = {t.name: t for t in ex.trajectory_fig.data if t.visible}
    assert set(shown) == set(TARGETS)
    for word in TARGETS:
        assert list(shown[word].y) == pytest.approx(traj["probs"][word])


def test_new_prompt_runs_one_forward_pass(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS)
    view = ex.views[BASE]
    ex.prompt_box.value = "50 - 23 = \n\n  \n48 / 6 = "
    assert list(ex.prompt_pick.options) == ["50 - 23 = ", "48 / 6 = "] and ex.prompt == "50 - 23 = "
    assert view.forward_passes == 2
    assert ex.current[BASE] == view.at("50 - 23 = ", ex.layer_slider.value)
    ex.prompt_pick.value = "48 / 6 = "
    assert view.forward_passes == 3
    ex.prompt_pick.value = "50 - 23 = "  # cached
    assert view.forward_passes == 3
    ex.position_pick.value = 0
    assert ex.current[BASE] == view.at("50 - 23 = ", ex.layer_slider.value, position=0)
    ex.prompt_box.value = "   \n"
    assert "no prompt" in ex.top_token.value and ex.prompt == "50 - 23 = "


def test_model_switch_shows_each_adapter_and_side_by_side(tiny_lm, adapter):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, adapters={"phase 1": adapter}, layer=2)
    assert list(ex.variant_pick.options) == [BASE, "phase 1", BOTH]
    assert "phase 1" not in ex.views  # loaded only when shown
    ex.variant_pick.value = "phase 1"
    tuned = ex.views["phase 1"]
    assert list(ex.current) == ["phase 1"] and ex.current["phase 1"] == tuned.at(PROMPTS[0], 2)
    base_probs = ex.views[BASE].at(PROMPTS[0], 2)["targets"]
    assert any(
        not math.isclose(base_probs[w]["prob"], ex.current["phase 1"]["targets"][w]["prob"], rel_tol=1e-3)
        for w in TARGETS
    ), "the adapter must change the lens"
    assert {t.name for t in ex.trajectory_fig.data if t.visible} == {f"{w} (phase 1)" for w in TARGETS}
    ex.variant_pick.value = BOTH
    assert list(ex.current) == [BASE, "phase 1"] and len(ex.tables.children) == 2
    assert sum(t.visible for t in ex.trajectory_fig.data) == 2 * len(TARGETS)
    assert ex.top_token.value.count("top token") == 2


def test_probe_curve_and_bad_input(tiny_lm, tmp_path):
    probe = {
        "model": "tiny",
        "layer_results": [{"layer": i, "accuracy": 0.5 + 0.1 * i, "control_accuracy": 0.25} for i in range(4)],
    }
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, probe=probe, layer=0)
    assert list(ex.probe_fig.data[0].y) == [0.5, 0.6, 0.7, 0.8]
    ex.layer_slider.value = 3
    assert ex.probe_fig.layout.shapes[0].x0 == 3
    with pytest.raises(WorkbenchError, match="holds no adapter_config.json"):
        LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, adapters={"x": tmp_path})
    with pytest.raises(WorkbenchError, match="layer 9 is out of range"):
        LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=9)
    with pytest.raises(WorkbenchError, match="no prompts"):
        LayerExplorer(tiny_lm, prompts=["  "], targets=TARGETS)


def test_layout_controls_left_and_views_in_tabs_right(tiny_lm):
    """One screen: the controls and the lens table in a 30% column, the views in tabs beside them (70%)."""
    import ipywidgets as w

    probe = {
        "model": "tiny",
        "layer_results": [{"layer": i, "accuracy": 0.5, "control_accuracy": 0.25} for i in range(4)],
    }
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, probe=probe)
    assert isinstance(ex.widget, w.HBox) and ex.widget.children[1] is ex.tabs
    controls = ex.widget.children[0]
    assert controls.layout.width == "30%" and ex.tabs.layout.width == "70%"
    for widget in (ex.prompt_box, ex.prompt_pick, ex.variant_pick, ex.layer_slider, ex.position_pick, ex.tables):
        assert widget in controls.children
    assert list(ex.tabs.titles) == [TAB_PROBS, TAB_RANKS, TAB_GRID, TAB_KL, TAB_STEER, TAB_PROBE]
    assert ex.tabs.children[0] is ex.trajectory_fig and ex.tabs.children[-1] is ex.outputs[TAB_PROBE]
    assert ex.tab == TAB_PROBS and ex.figures(TAB_PROBE) == [ex.probe_fig]
    # a tab's figure goes to the page (plotly's mime bundle) when the tab is shown, not before
    assert ex.outputs[TAB_RANKS].outputs == () and ex.outputs[TAB_PROBE].outputs == ()
    ex.show(TAB_RANKS)
    (sent,) = ex.outputs[TAB_RANKS].outputs
    bundle = sent["data"]["application/vnd.plotly.v1+json"]
    assert [t["y"] for t in bundle["data"]] == [list(t.y) for t in ex.rank_fig.data]
    ex.show(TAB_PROBE)
    assert len(ex.outputs[TAB_PROBE].outputs) == 1
    for fig in (ex.trajectory_fig, ex.rank_fig, ex.kl_fig, ex.steer_fig, ex.probe_fig):
        assert fig.layout.height <= FIG_HEIGHT  # with the tab bar, within an 800-pixel-high screen
    with pytest.raises(WorkbenchError, match="no tab 'nope'"):
        ex.show("nope")


def test_views_drawn_on_demand_only_when_their_tab_is_shown(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS)
    view = ex.views[BASE]
    ex.prompt_pick.value = PROMPTS[1]  # the probability tab is shown: no grid, no steering pass
    assert ex.grid_current == {} and ex.steering_current == {} and view.forward_passes == 2
    ex.show(TAB_GRID)
    assert set(ex.grid_current) == {BASE} and view.forward_passes == 2
    ex.show(TAB_STEER)
    assert ex.steering_current["prompt"] == PROMPTS[1]
    ex.prompt_pick.value = PROMPTS[0]  # shown: follows the prompt
    assert ex.steering_current["prompt"] == PROMPTS[0] and ex.grid_current[BASE] == view.grid(PROMPTS[1])
    ex.show(TAB_RANKS)
    assert [list(t.y) for t in ex.rank_fig.data if t.visible] == [
        view.trajectory(PROMPTS[0])["ranks"][w] for w in TARGETS
    ]


def test_readout_switch_reads_every_view_through_the_readout_picked(tiny_lm):
    """Patchscope, picked in the switch, gives what Patchscope gives on the captured state; at the last layer it is
    the logit lens (the patch goes in after the last block); switching back reads the cached logit lens again."""
    import torch

    from workbench.core.activations import capture_last_token
    from workbench.lenses.patchscope import Patchscope

    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1)
    assert (
        ex.readout_pick.options == ("logit", "shortcut", "patchscope")
        and ex.readout_pick in ex.widget.children[0].children
    )
    logit = {w: t["prob"] for w, t in ex.current[BASE]["targets"].items()}
    logit_line = list(ex.trajectory_fig.data[0].y)
    ex.readout_pick.value = "patchscope"
    state = capture_last_token(tiny_lm, [PROMPTS[0]], [1])[:, 0]
    direct = torch.softmax(Patchscope(tiny_lm).logits(1, state).float(), -1)[0]
    view = ex.view(BASE)
    for target in view.targets:
        assert ex.current[BASE]["targets"][target.word]["prob"] == pytest.approx(
            float(direct[target.token_id]), rel=1e-4
        )
    assert list(ex.trajectory_fig.data[0].y) != logit_line  # the probability view follows the switch
    last = tiny_lm.n_layers - 1
    ex.layer_slider.value = last
    patchscope_last = {w: t["prob"] for w, t in ex.current[BASE]["targets"].items()}
    ex.readout_pick.value = "logit"
    assert {w: t["prob"] for w, t in ex.current[BASE]["targets"].items()} == pytest.approx(patchscope_last, rel=1e-4)
    ex.layer_slider.value = 1
    assert {w: t["prob"] for w, t in ex.current[BASE]["targets"].items()} == pytest.approx(logit, rel=1e-6)
    assert view.forward_passes == 1  # one captured pass for the prompt, whatever the readout
    with pytest.raises(WorkbenchError, match="readout 'tuned': choose logit, shortcut, patchscope, or tuned with"):
        view.use("tuned")


def test_prompt_lines_keep_trailing_spaces():
    assert _prompt_lines("7 * 8 = \r\n\n 1 + 2 = \n") == ["7 * 8 = ", " 1 + 2 = "]


def test_run_artifacts_and_explorer_environment(tmp_path, monkeypatch):
    import json

    from workbench.ui.explorer import explorer_env
    from workbench.ui.run_folder import run_artifacts

    assert run_artifacts(None) == ({}, None) and run_artifacts("") == ({}, None)
    with pytest.raises(WorkbenchError, match="does not exist"):
        run_artifacts(tmp_path / "missing")
    run = tmp_path / "runs" / "r"
    for seed in (100, 42):
        (run / f"seed-{seed}" / "phase1_adapter").mkdir(parents=True)
        (run / f"seed-{seed}" / "phase1_adapter" / "adapter_config.json").write_text("{}")
    (run / "seed-42" / "phase2_adapter").mkdir()  # no adapter_config.json: not offered
    (run / "baseline_classifier.json").write_text(json.dumps({"layer_results": []}))
    adapters, probe = run_artifacts(run)
    assert adapters == {"phase 1": run / "seed-42" / "phase1_adapter"} and probe == {"layer_results": []}
    monkeypatch.chdir(tmp_path)  # Voila runs the notebook in notebooks/: relative paths must not reach it
    env = explorer_env("runs/r", "runs/r")
    assert env["WORKBENCH_RUN"] == str(run.resolve()) and env["WORKBENCH_MODEL"] == str(run.resolve())
    assert (
        explorer_env("default", None)["WORKBENCH_MODEL"] == "default"
        and explorer_env("default", None)["WORKBENCH_RUN"] == ""
    )
    with pytest.raises(WorkbenchError, match="does not exist"):
        explorer_env("default", "runs/nope")


def test_explorer_shutdown_stops_orphaned_kernels():
    """With the subreaper set, a grandchild whose parent exits (a kernel Voila leaves behind) is re-parented to
    `workbench explore` and stopped by stop_orphans; without it, it would go to init, out of reach. Runs in a child
    process, since the subreaper flag and the sweep act on the whole process."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, subprocess, sys, time
        from workbench.ui.explorer import _descendants, adopt_orphans, stop_orphans
        assert adopt_orphans()
        # a parent that starts a grandchild and exits at once: the grandchild is orphaned
        parent = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True)
        orphan = int(parent.stdout.readline()); parent.wait()
        time.sleep(0.2)
        assert orphan in _descendants(os.getpid()), "the orphan was not re-parented here"
        stop_orphans(grace=5)
        left = _descendants(os.getpid())
        print("left", left)
        sys.exit(1 if left else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

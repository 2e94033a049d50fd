"""The layer explorer's views (workbench/ui/lens_views.py and the tabs of LayerExplorer) on the tiny random Llama,
each against an independent path: ranks against torch.argsort of a lens computed by hand from HF's hidden states,
the grid against lens_logits on captured residuals, KL against torch's kl_div and against a separately loaded base
model (0 with the LoRA off), steering at strength 0 against the unsteered view and otherwise against the model's own
forward under ``steered``; no steering change generates.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench.causal.ablation import select, without_lora
from workbench.causal.steering import direction_from, median_resid_norm, steered, target_probs
from workbench.core.activations import capture_positions
from workbench.core.guide import CLASSES
from workbench.core.lens import lens_logits
from workbench.core.models import load_model
from workbench.ui import lens_figures
from workbench.ui import lens_views as lv
from workbench.ui.lens_view import LensView
from workbench.ui.widgets import BASE, BOTH, TAB_GRID, TAB_KL, TAB_RANKS, TAB_STEER, LayerExplorer

pytest.importorskip("ipywidgets")
TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPTS = ["7 * 8 = ", "23 + 45 = "]


@torch.inference_mode()
def _hand_lens_logits(lm, prompt: str) -> torch.Tensor:
    """[n_layers, pos, vocab] logits by hand: HF's hidden states (output_hidden_states), RMSNorm with the final
    norm's weight and eps, the LM head's matrix; the last layer is HF's own logits (its hidden state is normed)."""
    out = lm.hf_model(torch.tensor([lm.token_ids(prompt)]), output_hidden_states=True)
    head = lm.hf_model.get_output_embeddings()
    weight, eps = lm.hf_model.model.norm.weight, lm.hf_model.config.rms_norm_eps
    rows = []
    for hidden in out.hidden_states[1:-1]:  # after blocks 0 .. n-2
        x = hidden[0].float()
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
        logits = normed @ head.weight.T
        rows.append(logits + head.bias if getattr(head, "bias", None) is not None else logits)
    rows.append(out.logits[0].float())
    return torch.stack(rows)


def _hand_ranks(logits: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """1-based rank of each token in each row of ``logits`` [n, vocab] from a descending argsort."""
    order = torch.argsort(logits, dim=-1, descending=True)
    return torch.stack([(order == t).nonzero()[:, 1] + 1 for t in token_ids], dim=-1)


@pytest.fixture(scope="module")
def tuned(tiny_dir, adapter):
    """The tiny Llama with the random LoRA adapter loaded (one model: its LoRA can be switched off)."""
    return load_model(str(tiny_dir), device="cpu", adapter=adapter)


def test_ranks_equal_argsort_of_a_lens_computed_by_hand(tiny_lm):
    view = LensView(tiny_lm, TARGETS)
    ids = [t.token_id for t in view.targets]
    for prompt in PROMPTS:
        logits = _hand_lens_logits(tiny_lm, prompt)
        for position in (0, -1):
            expected = _hand_ranks(logits[:, position], ids)  # [layer, target]
            got = lv.target_lens(tiny_lm, view.residuals(prompt)[:, position], view.target_ids)
            assert torch.equal(got["ranks"], expected)
            assert got["probs"] == pytest.approx(torch.softmax(logits[:, position], -1)[:, ids], rel=1e-4, abs=1e-7)
            trajectory = view.trajectory(prompt, position)
            assert [trajectory["ranks"][w] for w in TARGETS] == expected.T.tolist()


def test_rank_tab_draws_each_targets_rank_with_rank_one_on_top(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS)
    ex.show(TAB_RANKS)
    ids = [t.token_id for t in ex.views[BASE].targets]
    expected = _hand_ranks(_hand_lens_logits(tiny_lm, PROMPTS[0])[:, -1], ids)
    shown = {t.name: list(t.y) for t in ex.rank_fig.data if t.visible}
    assert shown == {w: expected[:, j].tolist() for j, w in enumerate(TARGETS)}
    axis = ex.rank_fig.layout.yaxis
    assert axis.type == "log" and axis.range[0] > math.log10(ex.vocab_size) > 0 > axis.range[1]  # reversed: 1 on top
    ex.layer_slider.value = 3
    assert ex.rank_fig.layout.shapes[0].x0 == 3


def _lens_logits(lm, prompt: str) -> torch.Tensor:
    """lens_logits on the prompt's captured residuals: [layer, pos, vocab]."""
    with torch.inference_mode():
        return lens_logits(lm, capture_positions(lm, prompt)).float()


def _lens_log_probs(lm, prompt: str, position: int = -1) -> torch.Tensor:
    return torch.log_softmax(_lens_logits(lm, prompt)[:, position], -1)


def test_top_token_grid_equals_lens_logits_on_captured_residuals(tiny_lm):
    resid = capture_positions(tiny_lm, PROMPTS[1])
    logits = _lens_logits(tiny_lm, PROMPTS[1])
    grid = lv.top_token_grid(tiny_lm, resid)
    assert torch.equal(grid["token_ids"], logits.argmax(-1))
    assert grid["probs"] == pytest.approx(torch.softmax(logits.float(), -1).amax(-1), rel=1e-5)

    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1)
    assert ex.grid_current == {} and ex.figures(TAB_GRID) == [] and ex.grid_box.outputs == ()  # drawn when shown
    passes = ex.views[BASE].forward_passes
    ex.show(TAB_GRID)
    assert ex.views[BASE].forward_passes == passes  # from the cached residuals
    (fig,) = ex.figures(TAB_GRID)
    assert len(ex.grid_box.outputs) == 1  # sent to the page
    heatmap = fig.data[0]
    ids = _lens_logits(tiny_lm, ex.prompt).argmax(-1)
    decoded = [[lens_figures.cell_text(tiny_lm.tokenizer.decode([i])) for i in row] for row in ids.tolist()]
    assert [list(row) for row in heatmap.text] == decoded
    assert len(heatmap.z) == tiny_lm.n_layers and len(heatmap.z[0]) == len(tiny_lm.token_ids(ex.prompt))
    assert list(fig.layout.xaxis.ticktext)[0].startswith("0 ")
    ex.prompt_pick.value = PROMPTS[1]  # the tab is shown: redrawn for the new prompt
    assert [list(row) for row in fig.data[0].text] == [
        [lens_figures.cell_text(tiny_lm.tokenizer.decode([i])) for i in row] for row in grid["token_ids"].tolist()
    ]
    ex.layer_slider.value = 2
    box = fig.layout.shapes[0]
    last = len(tiny_lm.token_ids(PROMPTS[1])) - 1
    assert (box.y0, box.y1, box.x0, box.x1) == (1.5, 2.5, last - 0.5, last + 0.5)  # the chosen cell


def test_kl_divergence_against_torch():
    p = torch.log_softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), -1)
    q = torch.log_softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(1)), -1)
    expected = torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1)  # KL(p || q)
    assert lv.kl_divergence(p, q) == pytest.approx(expected, rel=1e-5)
    assert torch.all(lv.kl_divergence(p, p) == 0)


def test_kl_is_zero_with_the_lora_off_and_positive_with_the_adapter(tiny_lm, tuned):
    prompt = PROMPTS[0]
    kl = lv.adapter_kl(tuned, prompt)
    assert kl.shape == (tuned.n_layers,) and torch.all(kl > 1e-6)
    with without_lora(tuned, select(tuned)):  # base vs base
        assert lv.adapter_kl(tuned, prompt) == pytest.approx(torch.zeros(tuned.n_layers), abs=1e-6)
    # independently: the separately loaded base model's lens against the adapter's
    assert lv.base_residuals(tuned, prompt) == pytest.approx(capture_positions(tiny_lm, prompt), abs=1e-5)
    base, mine = _lens_log_probs(tiny_lm, prompt), _lens_log_probs(tuned, prompt)
    by_torch = torch.nn.functional.kl_div(base, mine, log_target=True, reduction="none").sum(-1)
    assert kl == pytest.approx(by_torch, rel=1e-4, abs=1e-7)


def test_kl_tab_draws_the_adapter_or_says_to_load_one(tiny_lm, adapter):
    alone = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS)
    alone.show(TAB_KL)
    assert alone.kl_box.children == (alone.kl_note,) and "Load an adapter" in alone.kl_note.value
    assert "--run" in alone.kl_note.value and alone.kl_current == {}

    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, adapters={"phase 1": adapter})
    ex.show(TAB_KL)
    assert ex.kl_box.children == (ex.kl_note,) and "pick one ('phase 1')" in ex.kl_note.value
    ex.variant_pick.value = BOTH
    assert ex.kl_box.children == (ex.outputs[TAB_KL],) and ex.figures(TAB_KL) == [ex.kl_fig]
    tuned_view = ex.views["phase 1"]
    expected = lv.adapter_kl(tuned_view.lm, PROMPTS[0])
    assert ex.kl_current["phase 1"] == pytest.approx(expected.tolist(), rel=1e-4)
    (trace,) = ex.kl_fig.data
    assert trace.visible and list(trace.y) == ex.kl_current["phase 1"] and all(v > 0 for v in trace.y)
    # against the explorer's own base view (a separately loaded base model)
    with torch.inference_mode():
        base = torch.log_softmax(lens_logits(tiny_lm, ex.views[BASE].residuals(PROMPTS[0])[:, -1]).float(), -1)
        mine = torch.log_softmax(lens_logits(tuned_view.lm, tuned_view.residuals(PROMPTS[0])[:, -1]).float(), -1)
    assert ex.kl_current["phase 1"] == pytest.approx(lv.kl_divergence(mine, base).tolist(), rel=1e-4, abs=1e-7)
    passes = tuned_view.forward_passes
    ex.layer_slider.value = 0  # the layer only moves the marker
    assert tuned_view.forward_passes == passes and ex.kl_fig.layout.shapes[0].x0 == 0
    ex.variant_pick.value = BASE
    assert ex.kl_box.children == (ex.kl_note,)


def test_steering_specs():
    assert lv.steering_specs(["a", "b"]) == ["unembed:a", "unembed:b", "random:0"]
    assert lv.steering_specs(["a"], ["x", "y", "z"])[2:] == ["mean-diff:x,y", "mean-diff:x,z", "mean-diff:y,z"]


def test_steering_at_strength_zero_is_the_unsteered_view(tiny_lm):
    view = LensView(tiny_lm, TARGETS)
    zero = torch.zeros(tiny_lm.d_model)
    for position in (-1, 1):
        got = lv.steered_lens(tiny_lm, PROMPTS[0], 2, zero, view.target_ids, position)
        plain = view.lens(PROMPTS[0], position)
        assert torch.equal(got["probs"], plain["probs"]) and torch.equal(got["ranks"], plain["ranks"])

    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1)
    ex.show(TAB_STEER)
    s = ex.steering_current
    assert s["strength"] == 0 and s["vector_norm"] == 0
    assert s["probs"] == s["unsteered_probs"] == ex.views[BASE].trajectory(PROMPTS[0])["probs"]
    assert s["ranks"] == s["unsteered_ranks"]
    for j, word in enumerate(TARGETS):  # steered (solid) and unsteered (dotted) traces coincide
        assert list(ex.steer_fig.data[2 * j].y) == list(ex.steer_fig.data[2 * j + 1].y) == s["probs"][word]


def test_steered_lens_reuses_the_unsteered_rows_below_the_steered_layer(tiny_lm):
    """With the unsteered lens at hand only the layers from the steered one on are read through the lens; the rows
    below are the unsteered ones, and the result equals reading every layer."""
    view = LensView(tiny_lm, TARGETS)
    vector = torch.nn.functional.normalize(
        torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(3)), dim=0
    )
    for layer in (0, 2, tiny_lm.n_layers - 1):
        for position in (-1, 2):
            every = lv.steered_lens(tiny_lm, PROMPTS[1], layer, vector, view.target_ids, position)
            plain = view.lens(PROMPTS[1], position)
            reused = lv.steered_lens(tiny_lm, PROMPTS[1], layer, vector, view.target_ids, position, plain)
            assert reused["probs"] == pytest.approx(every["probs"], rel=1e-4) and torch.equal(
                reused["ranks"], every["ranks"]
            )
            assert torch.equal(reused["probs"][:layer], plain["probs"][:layer])
            assert not torch.allclose(reused["probs"][layer:], plain["probs"][layer:])


def test_steering_slider_matches_the_models_own_forward_and_never_generates(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1, labelled=CLASSES)
    ex.show(TAB_STEER)
    ex.steer_layer.value = 1
    forwards = []  # passes through the embedding: one per steered pass, one per token when generating
    with tiny_lm.bridge.hooks(fwd_hooks=[("hook_embed", lambda act, hook: forwards.append(1))]):
        for strength in (1.0, -2.0, 0.5):
            forwards.clear()
            ex.steer_strength.value = strength
            assert len(forwards) == 1, "one steered pass per slider change"
            s = ex.steering_current
            norm = median_resid_norm(tiny_lm, PROMPTS, 1)
            assert s["median_norm"] == pytest.approx(norm) and s["vector_norm"] == pytest.approx(abs(strength) * norm)
            unit = direction_from("unembed:multiply", tiny_lm, 1).unit
            ids = ex.views[BASE].target_ids
            with steered(tiny_lm, 1, strength * norm * unit):
                own = target_probs(tiny_lm, [PROMPTS[0]], ids, readout_layer=2)
            for j, word in enumerate(TARGETS):  # the lens at layer 2, and the last layer's lens is the output
                assert s["probs"][word][2] == pytest.approx(float(own["lens"][0, j]), rel=1e-4)
                assert s["probs"][word][-1] == pytest.approx(float(own["output"][0, j]), rel=1e-4)
                assert s["probs"][word][:1] == s["unsteered_probs"][word][:1]  # before the steered layer: unchanged
            assert s["probs"] != s["unsteered_probs"]
            assert f"strength {strength:+.2f}" in ex.steer_info.value
        assert ex.steer_update_ms is not None
        forwards.clear()
        ex.steer_mode.value = "rank"  # redrawn from the last result: no forward
        assert forwards == [] and ex.steer_fig.layout.yaxis.range[0] > ex.steer_fig.layout.yaxis.range[1]
        assert list(ex.steer_fig.data[0].y) == ex.steering_current["ranks"]["multiply"]
        ex.steer_direction.value = "mean-diff:multiply,add"
        mean_diff = direction_from("mean-diff:multiply,add", tiny_lm, 1, *_flat(CLASSES)).unit
        assert ex._directions[BASE, "mean-diff:multiply,add", 1].unit == pytest.approx(mean_diff, abs=1e-6)
    assert ex.generations == 0 and ex.answers_current == {}  # nothing above generated
    assert "press" in ex.steer_answers.value


def _flat(labelled: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    return [p for ps in labelled.values() for p in ps], [c for c, ps in labelled.items() for _ in ps]


def test_greedy_answers_are_behind_their_button(tiny_lm):
    ex = LayerExplorer(tiny_lm, prompts=PROMPTS, targets=TARGETS, layer=1, max_new_tokens=4)
    assert "mean-diff:multiply,add" not in ex.steer_direction.options  # no labelled prompts: no mean-diff
    ex.show(TAB_STEER)
    ex.steer_generate.click()
    assert ex.generations == 2 and ex.answers_current["steered"] == ex.answers_current["unsteered"]  # strength 0
    assert not ex.answers_current["changed"] and "unchanged" in ex.steer_answers.value
    ex.steer_strength.value = 3.0
    assert ex.answers_current == {} and ex.generations == 2  # a change clears them, generating nothing
    ex.steer_generate.click()
    assert ex.generations == 3  # the unsteered answer is kept per prompt
    vector, _ = ex.steering_vector()
    assert ex.answers_current["steered"] == lv.steered_answers(tiny_lm, [PROMPTS[0]], 1, vector, 4)[0]
    assert ex.answers_current["unsteered"] == lv.steered_answers(tiny_lm, [PROMPTS[0]], 1, None, 4)[0]


def test_figure_builders():
    fig = lens_figures.rank_figure({"a": [1, 5, 100], "b": [3, 2, 1]}, vocab_size=1000, layer=1)
    assert [list(t.y) for t in fig.data] == [[1, 5, 100], [3, 2, 1]] and fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.range[0] > 3 > 0 > fig.layout.yaxis.range[1] and fig.layout.shapes[0].x0 == 1
    grid = lens_figures.top_token_grid_figure([["␣6", "a"]], [[0.5, 0.25]], ["0 x", "1 y"], layer=0, position=1)
    assert grid.data[0].texttemplate == "%{text}" and list(grid.layout.xaxis.ticktext) == ["0 x", "1 y"]
    assert grid.layout.shapes[0].x0 == 0.5
    cell_text = lens_figures.cell_text
    assert cell_text(" 6") == "␣6" and cell_text("\n") == "\\n" and cell_text("ab") == "ab"
    kl = lens_figures.kl_figure({"phase 1": [0.1, 0.2]}, layer=0)
    assert kl.layout.yaxis.type == "log" and list(kl.data[0].y) == [0.1, 0.2]
    steer = lens_figures.steering_figure({"a": [0.1, 0.2]}, {"a": [0.1, 0.1]}, "rank", 0, 100)
    assert [t.name for t in steer.data] == ["a", "a (unsteered)"] and steer.data[1].line.dash == "dot"
    assert steer.layout.yaxis.range[0] > steer.layout.yaxis.range[1]

"""Steering on the tiny random Llama, against hand-computed interventions: strength 0 is the identity, the hook adds
exactly the vector at every position (HF's own forward with the same addition gives the same logits), decode steps are
steered with the KV cache as without it, the median norm is the hand-computed one, and bad directions are one error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.causal import steering
from workbench.core.activations import capture_positions
from workbench.core.errors import WorkbenchError
from workbench.core.generation import greedy_answers

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "9 - 3 = ", "8 / 2 = "]
LABELS = ["multiply", "add", "subtract", "divide"]


def _logits(lm, prompt):
    with torch.no_grad():
        return lm.bridge(torch.tensor([lm.token_ids(prompt)]))[0]


def test_strength_zero_is_the_identity(tiny_lm):
    unit = steering.direction_from("unembed:multiply", tiny_lm, 1).unit
    for prompt in PROMPTS:
        plain = _logits(tiny_lm, prompt)
        with steering.steered(tiny_lm, 1, 0.0 * unit):
            torch.testing.assert_close(_logits(tiny_lm, prompt), plain, rtol=0, atol=0)


def test_the_hook_adds_the_vector_at_every_position_as_hfs_own_forward_would(tiny_lm):
    layer, vector = 1, torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(0))
    prompt = "12 + 5 = "
    plain = capture_positions(tiny_lm, prompt, [layer])[0]
    with steering.steered(tiny_lm, layer, vector):
        moved = capture_positions(tiny_lm, prompt, [layer])[0]
        bridge_logits = _logits(tiny_lm, prompt)
    torch.testing.assert_close(moved - plain, vector.expand_as(plain), rtol=1e-5, atol=1e-5)
    hf = tiny_lm.hf_model  # the independent path: HF's decoder layer with the same addition on its output
    handle = hf.model.layers[layer].register_forward_hook(
        lambda m, a, out: (out[0] + vector, *out[1:]) if isinstance(out, tuple) else out + vector
    )
    try:
        with torch.no_grad():
            hf_logits = hf(torch.tensor([tiny_lm.token_ids(prompt)])).logits[0]
    finally:
        handle.remove()
    torch.testing.assert_close(bridge_logits, hf_logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(bridge_logits, _logits(tiny_lm, prompt))  # it did move something


def test_decode_steps_are_steered_with_the_cache_as_without_it(tiny_lm):
    vector = 4.0 * steering.direction_from("unembed:add", tiny_lm, 2).unit
    with steering.steered(tiny_lm, 2, vector):
        cached = greedy_answers(tiny_lm, PROMPTS, 6)
        uncached = greedy_answers(tiny_lm, PROMPTS, 6, use_cache=False)
    assert cached == uncached


def test_median_norm_is_the_hand_computed_one(tiny_lm):
    prompts = PROMPTS + ["a longer prompt"]
    every = steering.median_resid_norms(tiny_lm, prompts, [3, 0, 2])  # one pass for all three layers
    for layer in (0, 2, 3):
        norms = torch.cat([capture_positions(tiny_lm, p, [layer])[0].norm(dim=-1) for p in prompts])
        assert every[layer] == pytest.approx(float(norms.median()), rel=1e-5)
    assert steering.median_resid_norm(tiny_lm, prompts, 2) == pytest.approx(every[2], rel=1e-6)


def test_directions_are_unit_and_mean_diff_is_the_class_means_difference(tiny_lm, tmp_path):
    from workbench.core.activations import capture_last_token

    layer = 1
    prompts, labels = PROMPTS * 2, LABELS * 2
    got = steering.direction_from("mean-diff:multiply,add", tiny_lm, layer, prompts, labels).unit
    feats = capture_last_token(tiny_lm, prompts, [layer])[:, 0]
    diff = feats[[0, 4]].mean(0) - feats[[1, 5]].mean(0)
    torch.testing.assert_close(got, diff / diff.norm())
    row = tiny_lm.hf_model.lm_head.weight[tiny_lm.tokenizer("multiply", add_special_tokens=False).input_ids[0]]
    torch.testing.assert_close(steering.direction_from("unembed:multiply", tiny_lm, layer).unit, row / row.norm())
    saved = torch.arange(tiny_lm.d_model, dtype=torch.float32) + 1
    np.save(tmp_path / "v.npy", saved.numpy())
    (tmp_path / "v.json").write_text(json.dumps(saved.tolist()))
    for name in ("v.npy", "v.json"):
        torch.testing.assert_close(
            steering.direction_from(f"file:{tmp_path / name}", tiny_lm, 0).unit, saved / saved.norm()
        )
    a, b = steering.random_direction(tiny_lm.d_model, 3), steering.random_direction(tiny_lm.d_model, 3)
    assert torch.equal(a.unit, b.unit) and float(a.unit.norm()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("sideways:x", "use mean-diff:CLASS_A,CLASS_B"),
        ("unembed:", "use mean-diff"),
        ("random:abc", "integer seed"),
        ("mean-diff:multiply", "two classes"),
        ("mean-diff:multiply,power", "class 'power' has no prompts"),
        ("file:/no/such/vector.npy", "does not exist"),
    ],
)
def test_bad_directions_name_the_fix(tiny_lm, spec, needle):
    with pytest.raises(WorkbenchError, match=needle):
        steering.direction_from(spec, tiny_lm, 1, PROMPTS, LABELS)


def test_a_vector_of_the_wrong_width_is_refused(tiny_lm, tmp_path):
    np.save(tmp_path / "wide.npy", np.ones(tiny_lm.d_model + 1, dtype=np.float32))
    with pytest.raises(WorkbenchError, match=f"holds \\({tiny_lm.d_model + 1},\\) values, the model's width is 32"):
        steering.direction_from(f"file:{tmp_path / 'wide.npy'}", tiny_lm, 1)
    np.save(tmp_path / "zero.npy", np.zeros(tiny_lm.d_model, dtype=np.float32))
    with pytest.raises(WorkbenchError, match="norm 0.0"):
        steering.direction_from(f"file:{tmp_path / 'zero.npy'}", tiny_lm, 1)


def test_the_sweep_has_every_cell_and_strength_zero_reproduces_the_baseline(tiny_lm):
    direction = steering.direction_from("unembed:multiply", tiny_lm, 1)
    result = steering.steer_sweep(
        tiny_lm, PROMPTS, direction, [0, 2], [0.0, 2.0], ["multiply", "add"], 1, max_new_tokens=3
    )
    assert len(result["cells"]) == 2 * 2 * 2
    for cell in result["cells"]:
        if cell["strength"] == 0.0:
            assert cell["output_p"] == pytest.approx(result["baseline"]["output_p"])
            assert cell["answers"] == result["baseline"]["answers"] and cell["answers_changed"] == 0
        else:
            assert cell["norm"] == pytest.approx(2.0 * result["median_norms"][str(cell["layer"])], rel=1e-5)
        assert (cell["lens_p"] is None) == (cell["layer"] > 1)  # the lens reads layer 1: steering above it is unseen
    strong = [c for c in result["cells"] if c["kind"] == "direction" and c["strength"] == 2.0 and c["layer"] == 0]
    assert strong[0]["output_p"]["multiply"] > result["baseline"]["output_p"]["multiply"]
    with pytest.raises(WorkbenchError, match="layer 4 is out of range"):
        steering.steer_sweep(tiny_lm, PROMPTS, direction, [4], [1.0], ["multiply"])


def test_the_sweep_figure_shows_the_change_from_the_baseline():
    from workbench.ui.causal_plots import steering_sweep_figure

    cells = [
        {"layer": layer, "strength": s, "kind": kind, "output_p": {" a": 0.1 + layer * s * (kind == "direction")}}
        for layer in (1, 3)
        for s in (0.0, 2.0)
        for kind in ("direction", "control")
    ]
    result = {
        "targets": [" a"],
        "baseline": {"output_p": {" a": 0.1}},
        "layers": [1, 3],
        "strengths": [0.0, 2.0],
        "direction": "unembed: a",
        "control": "random:0",
        "cells": cells,
    }
    direction, control = steering_sweep_figure(result).data
    np.testing.assert_allclose(np.asarray(direction.z), [[0.0, 2.0], [0.0, 6.0]], atol=1e-12)
    np.testing.assert_allclose(np.asarray(control.z), [[0.0, 0.0], [0.0, 0.0]], atol=1e-12)
    assert direction.zmax == pytest.approx(6.0)
    assert list(direction.y) == ["L1", "L3"] and list(direction.x) == ["0.0", "2.0"]

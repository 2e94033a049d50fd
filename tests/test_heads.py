"""Head ablation on the tiny random Llama (4 heads of d_head 8, 2 KV heads), against HF's own forward with the output
projection's input edited by a forward pre-hook: zeroing every head of a layer is that layer's o_proj input zeroed,
zeroing one head zeroes exactly its slice, mean-ablation sets the slice to the hand-computed mean over real tokens
(padding left out), the mean over a one-token prompt of itself is the identity, the sweep's rows are the lens under
each ablation, and bad requests are one error each."""

from __future__ import annotations

import pytest
import torch

from workbench.causal import heads
from workbench.core.errors import WorkbenchError
from workbench.core.lens import logit_lens

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "9 - 3 = ", "8 / 2 = "]
TARGETS = ["multiply", "add", "subtract", "divide"]
D_HEAD = 8


def _bridge_logits(lm, prompt):
    with torch.no_grad():
        return lm.bridge(torch.tensor([lm.token_ids(prompt)]))[0]


def _hf_logits_with_o_input(lm, prompt, layer, edit):
    """HF's forward with ``edit(x)`` applied to the input of ``layers[layer].self_attn.o_proj`` ([1, pos, n_heads *
    d_head], the heads' outputs side by side)."""
    o_proj = lm.hf_model.model.layers[layer].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda module, args: (edit(args[0].clone()), *args[1:]))
    try:
        with torch.no_grad():
            return lm.hf_model(torch.tensor([lm.token_ids(prompt)])).logits[0]
    finally:
        handle.remove()


def _zero(x, cols=slice(None)):
    x[..., cols] = 0.0
    return x


def test_zeroing_every_head_of_a_layer_is_its_o_proj_input_zeroed(tiny_lm):
    layer, prompt = 1, "12 + 5 = "
    expected = _hf_logits_with_o_input(tiny_lm, prompt, layer, _zero)
    with heads.heads_ablated(tiny_lm, [(layer, h) for h in range(4)]):
        got = _bridge_logits(tiny_lm, prompt)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, _bridge_logits(tiny_lm, prompt), atol=1e-3)  # it did something, and is undone


def test_zeroing_one_head_zeroes_exactly_its_slice(tiny_lm):
    layer, head, prompt = 2, 3, "9 - 3 = "
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
    expected = _hf_logits_with_o_input(tiny_lm, prompt, layer, lambda x: _zero(x, cols))
    with heads.heads_ablated(tiny_lm, [(layer, head)]):
        got = _bridge_logits(tiny_lm, prompt)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    wrong = _hf_logits_with_o_input(tiny_lm, prompt, layer, lambda x: _zero(x, slice(0, D_HEAD)))
    assert not torch.allclose(got, wrong, atol=1e-4)  # the head index is not ignored


def test_mean_ablation_sets_the_slice_to_the_mean_over_real_tokens(tiny_lm):
    layer, head = 0, 1
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
    mean_prompts = ["7 * 8 = ", "123 + 4567 = "]  # different lengths: the shorter one is padded in the batch
    seen = []
    o_proj = tiny_lm.hf_model.model.layers[layer].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0][0, :, cols].clone()))
    try:
        with torch.no_grad():
            for p in mean_prompts:  # one at a time: no padding at all
                tiny_lm.hf_model(torch.tensor([tiny_lm.token_ids(p)]))
    finally:
        handle.remove()
    mean = torch.cat(seen).mean(0)

    def put_mean(x):
        x[..., cols] = mean
        return x

    prompt = "12 + 5 = "
    expected = _hf_logits_with_o_input(tiny_lm, prompt, layer, put_mean)
    with heads.heads_ablated(tiny_lm, [(layer, head)], mode="mean", mean_prompts=mean_prompts):
        got = _bridge_logits(tiny_lm, prompt)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, _bridge_logits(tiny_lm, prompt), atol=1e-4)


def test_mean_over_a_one_token_prompt_of_itself_is_the_identity(tiny_lm):
    prompt = "7"
    assert len(tiny_lm.token_ids(prompt)) == 1
    plain = _bridge_logits(tiny_lm, prompt)
    every = [(layer, h) for layer in range(4) for h in range(4)]
    with heads.heads_ablated(tiny_lm, every, mode="mean", mean_prompts=[prompt]):
        torch.testing.assert_close(_bridge_logits(tiny_lm, prompt), plain, rtol=1e-6, atol=1e-6)
    with heads.heads_ablated(tiny_lm, every, mode="zero"):
        assert not torch.allclose(_bridge_logits(tiny_lm, prompt), plain, atol=1e-3)


def test_the_sweep_reads_the_lens_under_each_ablation(tiny_lm):
    result = heads.head_ablation_sweep(tiny_lm, PROMPTS, TARGETS, TARGETS, readout_layer=1)
    assert result["layers"] == [0, 1] and result["n_heads"] == 4 and result["baseline"]["answers"] is None
    assert [(r["layer"], r["head"]) for r in result["rows"][:5]] == [(0, "all"), (0, 0), (0, 1), (0, 2), (0, 3)]
    assert len(result["rows"]) == 10
    base = logit_lens(tiny_lm, PROMPTS, TARGETS, layer=1, expected=TARGETS)
    assert result["baseline"]["lens_expected_p"] == pytest.approx(base.mean_expected_prob, rel=1e-6)
    # the independent path for one row: HF's hidden state after layer 1 with head 1 of layer 1 zeroed, through HF's
    # own final norm and unembedding
    cols = slice(D_HEAD, 2 * D_HEAD)
    o_proj = tiny_lm.hf_model.model.layers[1].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda module, args: (_zero(args[0].clone(), cols), *args[1:]))
    probs = []
    try:
        with torch.no_grad():
            for prompt, word in zip(PROMPTS, TARGETS):
                out = tiny_lm.hf_model(torch.tensor([tiny_lm.token_ids(prompt)]), output_hidden_states=True)
                lens = tiny_lm.hf_model.lm_head(tiny_lm.hf_model.model.norm(out.hidden_states[2][0, -1]))
                probs.append(float(lens.softmax(-1)[tiny_lm.tokenizer(word, add_special_tokens=False).input_ids[0]]))
    finally:
        handle.remove()
    row = next(r for r in result["rows"] if (r["layer"], r["head"]) == (1, 1))
    assert row["lens_expected_p"] == pytest.approx(sum(probs) / len(probs), rel=1e-4)
    assert row["delta_expected_p"] == pytest.approx(sum(probs) / len(probs) - base.mean_expected_prob, rel=1e-4)


@pytest.fixture(scope="module")
def loud_lm(tmp_path_factory):
    """The tiny Llama with its attention outputs scaled up, so that a head decides some greedy answers (the plain
    random model's answers never move when a head is ablated)."""
    from conftest import build_tiny_llama, build_tiny_tokenizer

    from workbench.core.models import load_model

    path = tmp_path_factory.mktemp("loud")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(40)
            layer.self_attn.v_proj.weight.mul_(5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_model(str(path), device="cpu")


def test_the_mean_sweep_counts_the_answers_hfs_forward_changes(loud_lm):
    """``answers_changed`` against HF: each prompt's first greedy token with the head's slice of layer 3's o_proj
    input set to its mean over the prompts' tokens, compared with the unablated one."""
    tiny_lm = loud_lm
    mean = heads.head_ablation_sweep(
        tiny_lm, PROMPTS, TARGETS, TARGETS, readout_layer=3, layers=[3], mode="mean", max_new_tokens=1
    )
    assert mean["mean_prompts"] == PROMPTS and [r["head"] for r in mean["rows"]] == ["all", 0, 1, 2, 3]
    seen = []
    o_proj = tiny_lm.hf_model.model.layers[3].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0][0].clone()))
    try:
        with torch.no_grad():
            first = [
                int(tiny_lm.hf_model(torch.tensor([tiny_lm.token_ids(p)])).logits[0, -1].argmax()) for p in PROMPTS
            ]
    finally:
        handle.remove()
    means = torch.cat(seen).mean(0)
    for row in mean["rows"]:
        cols = slice(None) if row["head"] == "all" else slice(row["head"] * D_HEAD, (row["head"] + 1) * D_HEAD)

        def put_mean(x, cols=cols):
            x[..., cols] = means[cols]
            return x

        ablated = [int(_hf_logits_with_o_input(tiny_lm, p, 3, put_mean)[-1].argmax()) for p in PROMPTS]
        assert row["answers_changed"] == sum(a != b for a, b in zip(ablated, first)) / len(PROMPTS), row["head"]
    assert any(row["answers_changed"] > 0 for row in mean["rows"])  # the check has something to count


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda lm: heads.heads_ablated(lm, [(1, 0)], mode="resample"), "mode 'resample': use zero or mean"),
        (lambda lm: heads.heads_ablated(lm, [(9, 0)]), "layer 9 is out of range"),
        (lambda lm: heads.heads_ablated(lm, [(1, 4)]), "n_heads=4"),
        (lambda lm: heads.heads_ablated(lm, [(1, -1)]), "head -1 of layer 1 is out of range"),
        (lambda lm: heads.heads_ablated(lm, []), "no heads to ablate"),
        (lambda lm: heads.heads_ablated(lm, [(1, 0)], mode="mean"), "pass mean_prompts"),
    ],
)
def test_bad_requests_are_one_error_each(tiny_lm, call, needle):
    with pytest.raises(WorkbenchError) as exc:
        with call(tiny_lm):
            pass
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_bad_sweep_requests(tiny_lm):
    with pytest.raises(WorkbenchError, match="--readout-layer 7 is out of range"):
        heads.head_ablation_sweep(tiny_lm, PROMPTS, TARGETS, readout_layer=7)
    with pytest.raises(WorkbenchError, match="layer 5 is out of range"):
        heads.head_ablation_sweep(tiny_lm, PROMPTS, TARGETS, layers=[5])
    with pytest.raises(WorkbenchError, match="use zero or mean"):
        heads.head_ablation_sweep(tiny_lm, PROMPTS, TARGETS, mode="half")

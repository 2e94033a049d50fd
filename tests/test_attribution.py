"""Attribution on the tiny random Llama, against independent paths.

DLA: the parts sum to the lens logit difference computed on the captured residual (core.lens), the heads sum to their
layer's attention, the embedding's share is the hand-computed one from HF's embedding, norm and hidden states, and the
per-head shares equal those built by TransformerLens's ``stack_head_results`` (from ``W_O``) on the plain model and on a
merged copy of the adapter (peft's ``merge_and_unload``, a second bridge), where the unmerged ``W_O`` would miss the
LoRA. Attribution patching: clean against itself scores 0 everywhere, each node's score is the derivative of the metric
along the corrupt-to-clean patch of that node (a central difference through HF's own forward), real activation patching
agrees in sign with it, and GQA at edge level and unequal lengths are one error each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.causal import attribution
from workbench.core.activations import capture_last_token
from workbench.core.errors import WorkbenchError
from workbench.core.lens import lens_logits
from workbench.core.models import attach_adapter, boot_bridge, load_hf, load_model

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "9 - 3 = ", "8 / 2 = "]
D_HEAD = 8


def _id(lm, word):
    return lm.tokenizer(word, add_special_tokens=False).input_ids[0]


@pytest.fixture(scope="module")
def adapted(tiny_dir, adapter):
    return load_model(str(tiny_dir), device="cpu", adapter=adapter)


@pytest.fixture(scope="module")
def normed(tiny_dir, tmp_path_factory):
    """The tiny Llama with random norm weights (a fresh one's are all 1, which would hide a norm left out)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("normed")
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(path)
    return load_model(str(path), device="cpu")


def _parts_sum(result, layer):
    values = result["per_prompt"]
    parts = [values["embed"], values["constant"]]
    parts += [values[f"L{lay}.{kind}"] for lay in range(layer + 1) for kind in ("attn", "mlp")]
    return np.sum(parts, axis=0)


@pytest.mark.parametrize("other", ["add", None])
def test_the_parts_sum_to_the_lens_logit_difference(normed, other):
    tiny_lm = normed
    layer = 1
    result = attribution.direct_logit_attribution(tiny_lm, PROMPTS, "multiply", other, layer=layer)
    with torch.no_grad():
        lens = lens_logits(tiny_lm, capture_last_token(tiny_lm, PROMPTS, [layer])[:, 0])
    expected = lens[:, _id(tiny_lm, "multiply")] - (lens[:, _id(tiny_lm, other)] if other else 0.0)
    np.testing.assert_allclose(result["per_prompt"]["total"], expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_parts_sum(result, layer), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert result["unexplained"] < 1e-5 and result["layer"] == layer and len(result["layers"]) == 2
    values = result["per_prompt"]
    for lay in range(layer + 1):  # Llama's o_proj has no bias: the heads are all of the attention
        heads = np.sum([values[f"L{lay}H{h}"] for h in range(4)], axis=0)
        np.testing.assert_allclose(heads, values[f"L{lay}.attn"], rtol=1e-4, atol=1e-6)
        assert max(abs(v) for v in values[f"L{lay}.attn_bias"]) < 1e-6
    assert result["total"] == pytest.approx(float(expected.mean()), rel=1e-5)


def _by_hand(lm, prompt, layer, vectors):
    """HF's final norm with its scale frozen at hidden_states[layer + 1], applied to ``vectors`` [n, d] at the last
    token, projected on W_U[multiply] - W_U[add]."""
    hf = lm.hf_model
    with torch.no_grad():
        hidden = hf(torch.tensor([lm.token_ids(prompt)]), output_hidden_states=True).hidden_states[layer + 1][0, -1]
        rms = (hidden.pow(2).mean() + hf.config.rms_norm_eps).sqrt()
        w_u = hf.lm_head.weight
        return (hf.model.norm.weight * vectors / rms) @ (w_u[_id(lm, "multiply")] - w_u[_id(lm, "add")])


def _tl_heads(bridge, ids, layer):
    """Per-head outputs at the last token from TransformerLens's stack_head_results (W_O), [layer+1 * heads, d]."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids)
        return cache.stack_head_results(layer=layer + 1, pos_slice=-1)[:, 0]


def test_embed_and_heads_match_hand_and_transformerlens_paths(normed):
    tiny_lm = normed
    layer, prompt = 2, "12 + 5 = "
    result = attribution.direct_logit_attribution(tiny_lm, [prompt], "multiply", "add", layer=layer)
    ids = torch.tensor([tiny_lm.token_ids(prompt)])
    embed = tiny_lm.hf_model.model.embed_tokens.weight[ids[0, -1]][None]
    assert result["embed"] == pytest.approx(float(_by_hand(tiny_lm, prompt, layer, embed)[0]), rel=1e-5)
    heads = _by_hand(tiny_lm, prompt, layer, _tl_heads(tiny_lm.bridge, ids, layer))
    got = [result["per_prompt"][f"L{lay}H{h}"][0] for lay in range(layer + 1) for h in range(4)]
    np.testing.assert_allclose(got, heads.numpy(), rtol=1e-4, atol=1e-6)


def test_an_adapter_on_o_proj_counts_as_a_merged_copy_would(tiny_dir, adapter, adapted, tiny_lm):
    layer, prompt = 2, "9 - 3 = "
    result = attribution.direct_logit_attribution(adapted, [prompt], "multiply", "add", layer=layer)
    with torch.no_grad():
        lens = lens_logits(adapted, capture_last_token(adapted, [prompt], [layer])[:, 0])[0]
    total = float(lens[_id(adapted, "multiply")] - lens[_id(adapted, "add")])
    assert result["total"] == pytest.approx(total, rel=1e-5)
    assert float(_parts_sum(result, layer)[0]) == pytest.approx(total, rel=1e-4, abs=1e-5)
    assert result["total"] != pytest.approx(
        attribution.direct_logit_attribution(tiny_lm, [prompt], "multiply", "add", layer=layer)["total"], rel=1e-3
    )

    hf, tokenizer, _ = load_hf(str(tiny_dir))  # the independent path: a merged copy, its own bridge
    merged = attach_adapter(hf, adapter).merge_and_unload().eval()
    bridge = boot_bridge(merged, tokenizer, "merged", "cpu")
    bridge.eval()
    ids = torch.tensor([adapted.token_ids(prompt)])
    merged_heads = _tl_heads(bridge, ids, layer)
    expected = _by_hand(adapted, prompt, layer, merged_heads)
    got = [result["per_prompt"][f"L{lay}H{h}"][0] for lay in range(layer + 1) for h in range(4)]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    unmerged = _by_hand(adapted, prompt, layer, _tl_heads(adapted.bridge, ids, layer))  # W_O without the LoRA
    assert not np.allclose(got, unmerged.numpy(), rtol=1e-3, atol=1e-4)


def test_dla_bad_requests(tiny_lm):
    with pytest.raises(WorkbenchError, match="layer 4 is out of range"):
        attribution.direct_logit_attribution(tiny_lm, PROMPTS, "multiply", layer=4)
    with pytest.raises(WorkbenchError, match="both 'add'"):
        attribution.direct_logit_attribution(tiny_lm, PROMPTS, "add", "add")
    with pytest.raises(WorkbenchError, match="no prompts"):
        attribution.direct_logit_attribution(tiny_lm, [], "add")


# --- attribution patching --------------------------------------------------------------------------------------------

CLEAN, CORRUPT = "7 * 8 = ", "7 + 8 = "


def _hf_metric(lm, prompt, module, edit=None, pre=False, layer=None):
    """(metric, the activation at ``module``) from HF's forward: the multiply-minus-add logit at the last token, from
    the output or (``layer``) through HF's final norm and unembedding at hidden_states[layer + 1]; ``edit`` rewrites
    the module's output (or, ``pre``, its input)."""
    seen = {}

    def forward_hook(m, args, out):
        x = out[0] if isinstance(out, tuple) else out
        seen["x"] = x.clone()
        if edit is not None:
            x = edit(x.clone())
            return (x, *out[1:]) if isinstance(out, tuple) else x

    def pre_hook(m, args):
        seen["x"] = args[0].clone()
        if edit is not None:
            return (edit(args[0].clone()), *args[1:])

    hf = lm.hf_model
    handle = module.register_forward_pre_hook(pre_hook) if pre else module.register_forward_hook(forward_hook)
    try:
        with torch.no_grad():
            out = hf(torch.tensor([lm.token_ids(prompt)]), output_hidden_states=True)
    finally:
        handle.remove()
    with torch.no_grad():
        logits = out.logits[0, -1] if layer is None else hf.lm_head(hf.model.norm(out.hidden_states[layer + 1][0, -1]))
    return float(logits[_id(lm, "multiply")] - logits[_id(lm, "add")]), seen["x"]


def _node_module(lm, name):
    """(module, hook its input, the columns of the node) for a node name: embed, L1H2 (o_proj's input), L1.mlp."""
    hf = lm.hf_model
    if name == "embed":
        return hf.model.embed_tokens, False, slice(None)
    if "H" in name:
        lay, head = map(int, name[1:].split("H"))
        return hf.model.layers[lay].self_attn.o_proj, True, slice(head * D_HEAD, (head + 1) * D_HEAD)
    return hf.model.layers[int(name[1:].split(".")[0])].mlp, False, slice(None)


_RUNS: dict = {}


def _patched(lm, name, position, t, layer=None):
    """Metric change when node ``name`` at ``position`` of the corrupt run moves ``t`` of the way to its clean value."""
    module, pre, cols = _node_module(lm, name)
    key = (id(module), layer)
    if key not in _RUNS:  # the clean and corrupt runs once per module
        _RUNS[key] = (
            _hf_metric(lm, CLEAN, module, pre=pre, layer=layer),
            _hf_metric(lm, CORRUPT, module, pre=pre, layer=layer),
        )
    (_, clean), (base, corrupt) = _RUNS[key]

    def edit(x):
        x[0, position, cols] = corrupt[0, position, cols] + t * (clean[0, position, cols] - corrupt[0, position, cols])
        return x

    return _hf_metric(lm, CORRUPT, module, edit, pre, layer)[0] - base


def test_clean_against_itself_scores_zero_everywhere(tiny_lm):
    result = attribution.attribution_patching(tiny_lm, [CLEAN, "9 - 3 = "], [CLEAN, "9 - 3 = "], "multiply", "add")
    assert result["gap"] == 0.0 and result["layer"] == 2 and len(result["components"]) == 1 + 3 * 5
    assert set(result["components"].values()) == {0.0} and all(
        n["score"] == 0.0 for n in result["pairs"][0]["top_nodes"]
    )


@pytest.mark.parametrize("metric", ["output", "lens"])
def test_each_score_is_the_derivative_along_the_patch(tiny_lm, metric):
    layer = 2 if metric == "lens" else None
    result = attribution.attribution_patching(tiny_lm, [CLEAN], [CORRUPT], "multiply", "add", metric=metric, top_k=200)
    pair = result["pairs"][0]
    scores = {(n["node"], n["position"]): n["score"] for n in pair["top_nodes"]}
    (clean, _), (corrupt, _) = [
        _hf_metric(tiny_lm, p, tiny_lm.hf_model.model.norm, layer=layer) for p in (CLEAN, CORRUPT)
    ]
    assert pair["clean_metric"] - pair["corrupt_metric"] == pytest.approx(clean - corrupt, rel=1e-4)
    assert any(node.startswith("L3") for node, _ in scores) == (metric == "output")  # above the lens: left out
    for key in [("L2H3", 5), ("L1.mlp", 5), ("L0H1", 3), ("embed", 1)]:
        # central differences at eps and 2 eps, Richardson-extrapolated: error O(eps^4), float32 noise ~1e-6
        eps = 0.02
        near, far = (
            (_patched(tiny_lm, *key, h, layer) - _patched(tiny_lm, *key, -h, layer)) / (2 * h) for h in (eps, 2 * eps)
        )
        derivative = (4 * near - far) / 3
        assert scores[key] == pytest.approx(derivative, rel=1e-3, abs=3e-6), key
    if metric == "lens":
        return
    # real activation patching of each head at the last token: the linear estimate gets the sign of the big ones
    last = [(f"L{lay}H{h}", 5) for lay in range(4) for h in range(4)]
    real = np.array([_patched(tiny_lm, n, p, 1.0, layer) for n, p in last])
    estimate = np.array([scores[k] for k in last])
    big = np.abs(real) > 0.2 * np.abs(real).max()
    assert big.sum() >= 3 and (np.sign(real[big]) == np.sign(estimate[big])).all()
    assert np.corrcoef(real, estimate)[0, 1] > 0.9


def test_a_frozen_adapted_model_takes_gradients_too(adapted):
    """peft loads an adapter for analysis with every parameter frozen: no graph, unless the embedding starts one."""
    assert not any(p.requires_grad for p in adapted.hf_model.parameters())
    result = attribution.attribution_patching(
        adapted, [CLEAN], [CORRUPT], "multiply", "add", metric="output", top_k=200
    )
    scores = {(n["node"], n["position"]): n["score"] for n in result["pairs"][0]["top_nodes"]}
    key, eps = ("L1H1", 5), 0.02
    near, far = ((_patched(adapted, *key, h) - _patched(adapted, *key, -h)) / (2 * h) for h in (eps, 2 * eps))
    assert scores[key] == pytest.approx((4 * near - far) / 3, rel=1e-3, abs=3e-6)
    assert abs(scores[key]) > 1e-3


def test_attribution_patching_bad_requests(tiny_lm):
    with pytest.raises(WorkbenchError, match="is 6 tokens and corrupt prompt '17 \\+ 8 = ' is 7"):
        attribution.attribution_patching(tiny_lm, [CLEAN], ["17 + 8 = "], "multiply", "add")
    with pytest.raises(WorkbenchError, match="GQA.*use granularity node"):
        attribution.attribution_patching(tiny_lm, [CLEAN], [CORRUPT], "multiply", "add", granularity="edge")
    with pytest.raises(WorkbenchError, match="metric 'probe'"):
        attribution.attribution_patching(tiny_lm, [CLEAN], [CORRUPT], "multiply", metric="probe")
    with pytest.raises(WorkbenchError, match="1 clean and 2 corrupt"):
        attribution.attribution_patching(tiny_lm, [CLEAN], [CORRUPT, CLEAN], "multiply")

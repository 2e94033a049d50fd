"""Activation patching on the tiny random Llama, checked against HF's own forward with the same state swapped in by
plain PyTorch hooks (an independent path), and the identities: a patch onto itself changes nothing; patching the
whole residual entering layer 0 reproduces the source run."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.causal.patching import Pair, arithmetic_pairs, most_common_length, patch_sweep, read_pairs
from workbench.core.arithmetic import generate_arithmetic
from workbench.core.errors import WorkbenchError

READOUT = 2


@pytest.fixture(scope="module")
def pairs(tiny_lm):
    return most_common_length(tiny_lm, arithmetic_pairs(generate_arithmetic(300, 1), "multiply", "add", 12))


def hf_readout(lm, prompt: str, layer: int, pre_hook=None):
    """(lens logits at ``layer``, output log-probs), last token, from HF's forward; ``pre_hook`` (module, fn) is a
    forward pre-hook put on an HF module for the run."""
    ids = torch.tensor([lm.token_ids(prompt)])
    handle = pre_hook[0].register_forward_pre_hook(pre_hook[1]) if pre_hook else None
    try:
        with torch.no_grad():
            out = lm.hf_model(ids, output_hidden_states=True)
    finally:
        if handle:
            handle.remove()
    hidden = out.hidden_states[layer + 1][0, -1]
    lens = lm.hf_model.lm_head(lm.hf_model.model.norm(hidden))
    return lens, torch.log_softmax(out.logits[0, -1], -1)


def word_id(lm, word):
    return lm.tokenizer(word, add_special_tokens=False).input_ids[0]


def lens_diff(lm, lens, pair):
    lens = lens.detach()
    return float(lens[word_id(lm, pair.source_class)] - lens[word_id(lm, pair.target_class)])


def test_pairs_align_and_answers_follow_the_rule(pairs, tiny_lm):
    assert len(pairs) >= 4
    for pair in pairs:
        assert pair.source.replace(" * ", " + ") == pair.target
        a, b = (int(x) for x in pair.target.split()[::2][:2])
        assert (pair.source_answer, pair.target_answer) == (str(a * b), str(a + b))
        assert len(tiny_lm.token_ids(pair.source)) == len(tiny_lm.token_ids(pair.target))


def test_patch_onto_itself_changes_nothing(tiny_lm, pairs):
    same = [Pair(p.target, p.target, p.source_class, p.target_class, p.target_answer, p.source_answer) for p in pairs]
    result = patch_sweep(tiny_lm, same, "resid", "each", readout_layer=READOUT)
    for metric in result["metrics"].values():
        target = torch.tensor(metric["per_pair"])
        assert torch.allclose(target, target[:1].expand_as(target), atol=1e-5)
        assert metric["mean"] == pytest.approx([metric["target_mean"]] * len(result["cells"]), abs=1e-5)


def test_whole_residual_at_layer_0_reproduces_the_source_run(tiny_lm, pairs):
    result = patch_sweep(tiny_lm, pairs, "resid", "all", layers=[0, 3], readout_layer=READOUT)
    lens = result["metrics"]["lens_diff"]
    for i, pair in enumerate(result["pairs"]):
        pair = Pair(**pair)
        source_lens, _ = hf_readout(tiny_lm, pair.source, READOUT)
        target_lens, _ = hf_readout(tiny_lm, pair.target, READOUT)
        assert lens["per_pair"][0][i] == pytest.approx(lens_diff(tiny_lm, source_lens, pair), abs=1e-4)
        # layer 3 is after the readout layer: the lens there cannot move
        assert lens["per_pair"][1][i] == pytest.approx(lens_diff(tiny_lm, target_lens, pair), abs=1e-4)
    assert lens["recovered"][0] == pytest.approx(1.0, abs=1e-5)
    assert lens["recovered"][1] == pytest.approx(0.0, abs=1e-5)
    assert result["metrics"]["answer_diff"]["recovered"][0] == pytest.approx(1.0, abs=1e-5)


def test_one_head_patched_matches_hf_with_that_heads_slice_swapped(tiny_lm, pairs):
    layer, head = 1, 2
    result = patch_sweep(tiny_lm, pairs[:4], "heads", "last", layers=[layer], readout_layer=READOUT)
    cell = next(i for i, c in enumerate(result["cells"]) if c["head"] == head)
    d_head = tiny_lm.hf_model.config.hidden_size // tiny_lm.hf_model.config.num_attention_heads
    o_proj = tiny_lm.hf_model.model.layers[layer].self_attn.o_proj
    kept = {}
    for i, raw in enumerate(result["pairs"]):
        pair = Pair(**raw)
        hf_readout(tiny_lm, pair.source, READOUT, (o_proj, lambda m, args: kept.update(z=args[0].clone())))

        def swap(module, args):
            z = args[0].clone()
            z[:, -1, head * d_head : (head + 1) * d_head] = kept["z"][:, -1, head * d_head : (head + 1) * d_head]
            return (z,)

        lens, log_probs = hf_readout(tiny_lm, pair.target, READOUT, (o_proj, swap))
        assert result["metrics"]["lens_diff"]["per_pair"][cell][i] == pytest.approx(
            lens_diff(tiny_lm, lens, pair), abs=1e-4
        )
        src, tgt = (tiny_lm.token_ids(p + a)[len(tiny_lm.token_ids(p))] for p, a in
                    ((pair.source, pair.source_answer), (pair.target, pair.target_answer)))  # fmt: skip
        if src != tgt:
            assert result["metrics"]["answer_diff"]["per_pair"][cell][
                sum(1 for r in result["pairs"][:i] if _differs(tiny_lm, Pair(**r)))
            ] == pytest.approx(float(log_probs[src] - log_probs[tgt]), abs=1e-4)


def _differs(lm, pair):
    first = [lm.token_ids(p + a)[len(lm.token_ids(p))] for p, a in
             ((pair.source, pair.source_answer), (pair.target, pair.target_answer))]  # fmt: skip
    return first[0] != first[1]


def test_one_batched_forward_per_cell(tiny_lm, pairs, monkeypatch):
    calls = []
    for name in ("run_with_hooks", "run_with_cache"):
        real = getattr(tiny_lm.bridge, name)

        def counted(tokens, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, tokens.shape[0]))
            return _real(tokens, *args, **kwargs)

        monkeypatch.setattr(tiny_lm.bridge, name, counted)
    patch_sweep(tiny_lm, pairs, "resid", "last", readout_layer=READOUT)
    # the source run (cached), then the unpatched target and 4 layers: each with every pair in one batch
    assert calls == [("run_with_cache", len(pairs))] + [("run_with_hooks", len(pairs))] * (tiny_lm.n_layers + 1)


def test_unequal_lengths_name_both_or_align_on_the_last_token(tiny_lm):
    uneven = [
        Pair("7 * 8 = ", "17 + 28 = ", "multiply", "add", "56", "45"),
        Pair("3 * 4 = ", "3 + 4 = ", "multiply", "add", "12", "7"),
    ]
    with pytest.raises(WorkbenchError, match=r"has 6 tokens, target '17 \+ 28 = ' has 8.*--align last"):
        patch_sweep(tiny_lm, uneven, "resid", "last")
    with pytest.raises(WorkbenchError, match="--positions last"):
        patch_sweep(tiny_lm, uneven, "resid", "each", align="last")
    result = patch_sweep(tiny_lm, uneven, "resid", "last", layers=[0], align="last", readout_layer=READOUT)
    assert result["n_pairs"] == 2 and result["metrics"]["answer_diff"]["pairs"] == 2
    with pytest.raises(WorkbenchError, match="pair 1 has no source_answer"):
        patch_sweep(tiny_lm, [uneven[0], Pair("3 * 4 = ", "3 + 4 = ", "multiply", "add")], align="last")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"what": "mlp"}, "--what 'mlp'"),
        ({"positions": "middle"}, "--positions 'middle'"),
        ({"layers": [9]}, "layer 9"),
        ({"readout_layer": -1}, "--readout-layer"),
    ],
)
def test_bad_settings_are_one_line(tiny_lm, pairs, kwargs, message):
    with pytest.raises(WorkbenchError, match=message):
        patch_sweep(tiny_lm, pairs, **kwargs)


def test_read_pairs_names_the_broken_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = {"source": "a", "target": "b", "source_class": "add", "target_class": "multiply"}
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(WorkbenchError, match=r"pairs.jsonl:2: broken JSON"):
        read_pairs(path)
    path.write_text(json.dumps({**good, "colour": 1}) + "\n")
    with pytest.raises(WorkbenchError, match="unknown key 'colour'"):
        read_pairs(path)
    path.write_text(json.dumps(good) + "\n")
    assert read_pairs(path) == [Pair(**good)]
    with pytest.raises(WorkbenchError, match="not an arithmetic operation"):
        arithmetic_pairs([], "power", "add", 3)

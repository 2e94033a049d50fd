"""Cached generation is correct: with the KV-cache shim (core/kv_cache.py), greedy decoding with the cache gives the
same tokens and logits (within 1e-4) as re-running the whole sequence, through the bridge and through HF `generate`,
with and without a LoRA adapter; without the shim the cache is never written (the bug it fixes)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from workbench.core import kv_cache
from workbench.core.generation import greedy_answers, next_logits
from workbench.core.models import load_hf, load_model

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "add 3 4", "9 - 12 = "]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) B, so that it changes every decode step."""
    hf, _, _ = load_hf(str(tiny_dir))
    torch.manual_seed(1)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    path = tmp_path_factory.mktemp("adapter")
    get_peft_model(hf, config).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["base", "lora"])
def lm(request, tiny_dir, adapter_dir):
    return load_model(str(tiny_dir), device="cpu", adapter=adapter_dir if request.param else None)


def bridge_decode(lm, ids: torch.Tensor, cached: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens [batch, new] and the logits of every step [batch, new, vocab], through the bridge."""
    seq, cache, steps = ids, None, []
    with torch.inference_mode():
        for _ in range(NEW_TOKENS):
            logits, cache = next_logits(lm, seq, cache, use_cache=cached)
            steps.append(logits[:, -1])
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[:, ids.shape[1] :], torch.stack(steps, dim=1)


def prompt_ids(lm) -> torch.Tensor:
    return torch.tensor([lm.token_ids(PROMPTS[0]), lm.token_ids("3 * 4 = ")])  # the same length: no padding


def test_booting_a_bridge_installs_the_shim_where_it_is_needed(lm):
    assert kv_cache.installed() == kv_cache.needed()
    assert kv_cache.install() == kv_cache.installed()  # idempotent: a second boot wraps nothing twice


def test_cached_bridge_decoding_equals_uncached(lm):
    ids = prompt_ids(lm)
    tokens, logits = bridge_decode(lm, ids, cached=True)
    ref_tokens, ref_logits = bridge_decode(lm, ids, cached=False)
    assert torch.equal(tokens, ref_tokens)
    assert (logits - ref_logits).abs().max() < 1e-4


def test_cached_hf_generate_equals_uncached_after_booting(lm):
    """The bridge replaces the HF attention modules in place, so HF's own generate goes through it too."""
    ids = prompt_ids(lm)
    runs = {
        cached: lm.hf_model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            use_cache=cached,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
        for cached in (True, False)
    }
    assert torch.equal(runs[True].sequences, runs[False].sequences)
    diff = max((a - b).abs().max().item() for a, b in zip(runs[True].logits, runs[False].logits))
    assert diff < 1e-4
    tokens, _ = bridge_decode(lm, ids, cached=False)  # and HF's greedy tokens are the bridge's
    assert torch.equal(runs[True].sequences[:, ids.shape[1] :], tokens)


def test_greedy_answers_with_the_cache_equal_cache_free(lm):
    prompts = [*PROMPTS, "1 + 1 = ", "x"]  # groups of different lengths; rows leave the cache as they finish
    eos = lm.tokenizer.convert_tokens_to_ids("5")  # a frequent token as EOS, so that some rows stop early
    for until_integer in (False, True):
        cached = greedy_answers(lm, prompts, NEW_TOKENS, eos_token_id=eos, until_integer=until_integer)
        assert cached == greedy_answers(
            lm, prompts, NEW_TOKENS, eos_token_id=eos, until_integer=until_integer, use_cache=False
        )


@pytest.mark.skipif(not kv_cache.needed(), reason="this TransformerLens reads the new keyword itself")
def test_without_the_shim_the_cache_is_never_written(lm, monkeypatch):
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    monkeypatch.setattr(AttentionBridge, "_update_kv_cache", AttentionBridge._update_kv_cache.__wrapped__)
    ids = prompt_ids(lm)
    with torch.inference_mode():
        _, cache = lm.bridge(ids, return_type="logits_and_cache", use_cache=True)
    assert cache.get_seq_length() == 0  # the bug: nothing was stored
    _, logits = bridge_decode(lm, ids, cached=True)
    _, ref = bridge_decode(lm, ids, cached=False)
    assert (logits[:, 1:] - ref[:, 1:]).abs().max() > 1e-2  # every step after the first attends only to itself

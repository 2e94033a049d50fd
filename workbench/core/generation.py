"""Greedy decoding through the bridge, with the KV cache (stopped at EOS, or once the first integer is complete)."""

from __future__ import annotations

import torch

from .arithmetic import integer_complete
from .models import LoadedModel

GREEDY_DECODING = (
    "greedy argmax through the bridge with HF's KV cache, prompt tokenized as everywhere here, stop at EOS or "
    "max_new_tokens; for answers, also once the first integer is complete"
)


def next_logits(lm: LoadedModel, seq: torch.Tensor, cache=None, use_cache: bool = True):
    """One decode step through the bridge: (logits [batch, pos, vocab], cache). With the cache, the first call runs the
    whole sequence and later calls only its last token; without it, every call re-runs the whole sequence."""
    if not use_cache:
        return lm.bridge(seq), None
    if cache is None:
        return lm.bridge(seq, return_type="logits_and_cache", use_cache=True)
    return lm.bridge(seq[:, -1:], return_type="logits_and_cache", past_key_values=cache)


def greedy_answers(lm: LoadedModel, prompts: list[str], max_new_tokens: int = 8, **options) -> list[str]:
    """Each prompt's greedy continuation, decoded (``greedy_tokens``, whose options it takes)."""
    new = greedy_tokens(lm, prompts, max_new_tokens, **options)
    return [lm.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in new]


@torch.inference_mode()
def greedy_tokens(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 8,
    eos_token_id: int | None = None,
    until_integer: bool = False,
    use_cache: bool = True,
    until=None,
) -> list[list[int]]:
    """Each prompt's greedy continuation as token ids (argmax at every step, no sampling), stopped at EOS (default: the tokenizer's)
    or after ``max_new_tokens`` — or, with ``until_integer``, as soon as its first integer is complete (the answer
    ``first_integer`` reads is then the same as from the full continuation). Prompts with the same number of tokens
    decode as one batch, so no padding is ever involved; a finished prompt leaves its batch (and its rows leave the
    KV cache). ``until(text)``: any other stop rule on the decoded continuation. ``use_cache=False`` re-runs the whole sequence at every step (the reference the cache is tested on)."""
    eos = lm.tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    until = integer_complete if until_integer else until
    ids = [lm.token_ids(p) for p in prompts]
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
        groups.setdefault(len(row), []).append(i)
    new: list[list[int]] = [[] for _ in prompts]
    for members in groups.values():
        seq = torch.tensor([ids[i] for i in members], device=lm.device)  # [batch, pos]: the unfinished prompts
        cache = None
        for _ in range(max_new_tokens):
            logits, cache = next_logits(lm, seq, cache, use_cache)
            nxt = logits[:, -1].argmax(-1)
            going = []
            for row, (i, token) in enumerate(zip(members, nxt.tolist())):
                if token == eos:
                    continue
                new[i].append(token)
                if not (until and until(lm.tokenizer.decode(new[i], skip_special_tokens=True))):
                    going.append(row)
            if not going:
                break
            if cache is not None and len(going) < len(members):
                cache.batch_select_indices(torch.tensor(going, device=seq.device))
            members = [members[row] for row in going]
            seq = torch.cat([seq, nxt[:, None]], dim=1)[going]
    return new

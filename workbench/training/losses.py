"""SFT examples and losses: prompt+response encoding, prompt masking, answer CE, lens (classifier) CE.

One process takes the mean of each CE over its batch. Several ranks each hold a slice of the global batch; each takes
the sum over its slice divided by ``Shares`` (the global count over the number of ranks), so that the mean over ranks
that DDP and FSDP2 take of the gradients is the gradient of the global batch's mean, whatever the slices' sizes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..core.activations import resid_hook_name
from ..core.lens import lens_logits
from ..core.models import LoadedModel

IGNORE = -100


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # IGNORE where no loss; aligned with ids (not shifted)
    prompt_len: int
    target: int = IGNORE  # classifier target token id for the intermediate loss


def encode_records(lm: LoadedModel, records: list[dict], mask_prompt: bool, *args, **kwargs) -> list[Encoded]:
    """prompt tokens (the model's own tokenization) + response tokens (+ EOS). With ``mask_prompt`` only the
    response (and EOS) carry loss; otherwise every token after the first does. ``encode_with`` on the model's
    tokenizer and context length (its other arguments: ``add_eos``, ``target_ids``)."""
    return encode_with(lm.tokenizer, lm.max_length, records, mask_prompt, *args, **kwargs)


def encode_with(
    tokenizer,
    max_length: int,
    records: list[dict],
    mask_prompt: bool,
    add_eos: bool = True,
    target_ids: dict[str, int] | None = None,
) -> list[Encoded]:
    """``encode_records`` from a tokenizer alone (before the model loads: the memory check measures the longest
    example this way); ``lm.token_ids`` is ``tokenizer(text, add_special_tokens=True)``."""
    eos = tokenizer.eos_token_id
    out = []
    for r in records:
        prompt = list(tokenizer(r["prompt"], add_special_tokens=True).input_ids)
        response = list(tokenizer(r["response"], add_special_tokens=False).input_ids)
        if add_eos and eos is not None:
            response.append(eos)
        ids = prompt + response
        labels = ([IGNORE] * len(prompt) if mask_prompt else list(prompt)) + response
        op = r.get("classification_target", r.get("operation"))
        target = (target_ids or {}).get(op, IGNORE)
        out.append(Encoded(ids[:max_length], labels[:max_length], len(prompt), target))
    return out


@dataclass
class SFTBatch:
    input_ids: Int[Tensor, "batch seq"]  # right-padded
    labels: Int[Tensor, "batch seq"]  # IGNORE on padding / masked prompt
    lengths: Int[Tensor, " batch"]
    last_prompt: Int[Tensor, " batch"]  # index of the last prompt token
    targets: Int[Tensor, " batch"]  # classifier target token ids (IGNORE when none)


def sft_batch(examples: list[Encoded], pad_id: int, device: str) -> SFTBatch:
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    return SFTBatch(
        ids.to(device),
        labels.to(device),
        torch.tensor([len(e.ids) for e in examples], device=device),
        torch.tensor([e.prompt_len - 1 for e in examples], device=device),
        torch.tensor([e.target for e in examples], device=device),
    )


@dataclass(frozen=True)
class Shares:
    """What one rank divides its loss sums by: the global micro-batch's count of answer tokens (and of classifier
    targets) over the number of ranks. ``None`` instead of Shares: the plain mean of one process."""

    tokens: float
    targets: float

    @classmethod
    def of(cls, global_examples: list[Encoded], world_size: int) -> Shares:
        tokens = sum(sum(1 for label in e.labels[1:] if label != IGNORE) for e in global_examples)
        targets = sum(1 for e in global_examples if e.target != IGNORE)
        return cls(tokens / world_size, targets / world_size)


def blank(example: Encoded) -> Encoded:
    """The example with no loss anywhere: what a rank whose slice of a short last micro-batch is empty runs, so that
    it still takes part in the forward, the backward and their collectives."""
    return Encoded(example.ids, [IGNORE] * len(example.labels), example.prompt_len, IGNORE)


def answer_loss(
    logits: Float[Tensor, "batch seq d_vocab"], labels: Int[Tensor, "batch seq"], share: float | None = None
) -> Float[Tensor, ""]:
    """Next-token CE: logits at position t predict labels at t+1. The mean; with ``share``, the sum over ``share``."""
    flat_logits, flat_labels = logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten()
    if share is None:
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE)
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum") / max(share, 1e-12)


def classifier_loss(
    lm: LoadedModel,
    resid: Float[Tensor, "batch seq d_model"],
    last_prompt: Int[Tensor, " batch"],
    targets: Int[Tensor, " batch"],
    share: float | None = None,
) -> Float[Tensor, ""]:
    """CE of the logit lens at the last prompt token against each example's target token (mean, or sum / share)."""
    none = share <= 0 if share is not None else not bool((targets != IGNORE).any())
    if none:
        return resid.sum() * 0.0  # no example in this (global) batch has a classifier target
    rows = torch.arange(resid.shape[0], device=resid.device)
    logits = lens_logits(lm, resid[rows, last_prompt])  # [batch, d_vocab]
    if share is None:
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum") / share


@contextmanager
def lens_capture(lm: LoadedModel, layer: int | None):
    """Hooks on for as long as the context is open: ``store["resid"]`` is layer ``layer``'s residual stream (nothing is
    hooked for ``None``). Keep it open across ``backward()``: a checkpointed layer recomputes its forward in backward,
    and hooks removed before then (``run_with_hooks`` removes its own at return) would not run in the recomputation."""
    store: dict = {}
    if layer is None:
        yield store
        return

    def keep(resid, hook):
        store["resid"] = resid
        return resid

    with lm.bridge.hooks(fwd_hooks=[(resid_hook_name(layer), keep)]):
        yield store


def sft_losses(
    lm: LoadedModel,
    batch: SFTBatch,
    layer: int | None = None,
    weight: float = 0.0,
    model: torch.nn.Module | None = None,
    shares: Shares | None = None,
    store: dict | None = None,
) -> dict[str, Float[Tensor, ""]]:
    """One forward through the bridge (or ``model``, the DDP wrapper around it). With a layer and weight > 0, the
    dual-reward total w * classifier CE + (1 - w) * answer CE, the classifier term read from a hook so gradients flow.
    ``store``: an open ``lens_capture`` of that layer (else one is opened for the forward alone)."""
    forward = model if model is not None else lm.bridge
    if layer is None or weight <= 0:
        logits = forward(batch.input_ids)
        ans = answer_loss(logits, batch.labels, shares and shares.tokens)
        return {"loss": ans, "answer_loss": ans}
    if store is None:
        with lens_capture(lm, layer) as store:
            return sft_losses(lm, batch, layer, weight, model, shares, store)
    logits = forward(batch.input_ids)
    ans = answer_loss(logits, batch.labels, shares and shares.tokens)
    cls = classifier_loss(lm, store["resid"], batch.last_prompt, batch.targets, shares and shares.targets)
    return {"loss": weight * cls + (1 - weight) * ans, "answer_loss": ans, "classifier_loss": cls}


def sft_step(
    lm: LoadedModel,
    batch: SFTBatch,
    layer: int | None,
    weight: float,
    accumulation: int,
    model: torch.nn.Module | None = None,
    shares: Shares | None = None,
) -> dict[str, float]:
    """Forward, loss and ``backward()`` of one micro-batch, the lens hook on throughout (gradient checkpointing
    recomputes hooked layers in backward). Returns each loss over ``accumulation``, as floats."""
    with lens_capture(lm, layer if weight > 0 else None) as store:
        losses = sft_losses(lm, batch, layer, weight, model, shares, store)
        (losses["loss"] / accumulation).backward()
    return {k: v.item() / accumulation for k, v in losses.items()}

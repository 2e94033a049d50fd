"""SFT examples and losses: prompt+response encoding, prompt masking, answer CE, lens (classifier) CE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..core.lens import lens_logits
from ..core.models import LoadedModel

IGNORE = -100


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # IGNORE where no loss; aligned with ids (not shifted)
    prompt_len: int
    target: int = IGNORE  # classifier target token id for the intermediate loss


def encode_records(
    lm: LoadedModel,
    records: list[dict],
    mask_prompt: bool,
    add_eos: bool = True,
    target_ids: dict[str, int] | None = None,
) -> list[Encoded]:
    """prompt tokens (the model's own tokenization) + response tokens (+ EOS). With ``mask_prompt`` only the
    response (and EOS) carry loss; otherwise every token after the first does."""
    eos = lm.tokenizer.eos_token_id
    out = []
    for r in records:
        prompt = lm.token_ids(r["prompt"])
        response = list(lm.tokenizer(r["response"], add_special_tokens=False).input_ids)
        if add_eos and eos is not None:
            response.append(eos)
        ids = prompt + response
        labels = ([IGNORE] * len(prompt) if mask_prompt else list(prompt)) + response
        op = r.get("classification_target", r.get("operation"))
        target = (target_ids or {}).get(op, IGNORE)
        out.append(Encoded(ids[: lm.max_length], labels[: lm.max_length], len(prompt), target))
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


def answer_loss(logits: Float[Tensor, "batch seq d_vocab"], labels: Int[Tensor, "batch seq"]) -> Float[Tensor, ""]:
    """Next-token CE: logits at position t predict labels at t+1."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


def classifier_loss(
    lm: LoadedModel,
    resid: Float[Tensor, "batch seq d_model"],
    last_prompt: Int[Tensor, " batch"],
    targets: Int[Tensor, " batch"],
) -> Float[Tensor, ""]:
    """CE of the logit lens at the last prompt token against each example's target token."""
    if not bool((targets != IGNORE).any()):
        return resid.sum() * 0.0  # no example in this batch has a classifier target
    rows = torch.arange(resid.shape[0], device=resid.device)
    logits = lens_logits(lm, resid[rows, last_prompt])  # [batch, d_vocab]
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)


def sft_losses(
    lm: LoadedModel, batch: SFTBatch, layer: int | None = None, weight: float = 0.0
) -> dict[str, Float[Tensor, ""]]:
    """One forward through the bridge. With a layer and weight > 0, the dual-reward total
    w * classifier CE + (1 - w) * answer CE, the classifier term read from a hook so gradients flow."""
    if layer is None or weight <= 0:
        logits = lm.bridge(batch.input_ids)
        ans = answer_loss(logits, batch.labels)
        return {"loss": ans, "answer_loss": ans}
    store = {}

    def keep(resid, hook):
        store["resid"] = resid
        return resid

    logits = lm.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", keep)])
    ans = answer_loss(logits, batch.labels)
    cls = classifier_loss(lm, store["resid"], batch.last_prompt, batch.targets)
    return {"loss": weight * cls + (1 - weight) * ans, "answer_loss": ans, "classifier_loss": cls}

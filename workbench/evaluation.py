"""Held-out evaluation of a (trained) model: the lens at the classifier layer and answer accuracy."""

from __future__ import annotations

import torch

from .lens import logit_lens
from .models import LoadedModel
from .sft import encode_records, sft_batch, answer_loss


def lens_metrics(lm: LoadedModel, records: list[dict], targets: dict[str, str], layer: int, batch_size: int = 64) -> dict:
    """Correct-operation target probability (mean, per op) and top-1 score at ``layer`` on held-out prompts."""
    usable = [r for r in records if r.get("classification_target", r.get("operation")) in targets]
    expected = [targets[r.get("classification_target", r.get("operation"))] for r in usable]
    words = list(dict.fromkeys(targets.values()))
    result = logit_lens(lm, [r["prompt"] for r in usable], words, layer, expected=expected, batch_size=batch_size)
    per_op: dict[str, list[float]] = {}
    for r, row in zip(usable, result.results):
        per_op.setdefault(r.get("classification_target", r.get("operation")), []).append(row.target_probs[row.expected])
    return {
        "layer": layer,
        "prompts": len(usable),
        "mean_correct_target_prob": result.mean_expected_prob,
        "top1_score": result.score,
        "per_operation_prob": {op: sum(v) / len(v) for op, v in per_op.items()},
        "target_tokens": {t.word: {"token_id": t.token_id, "token": t.token, "n_subtokens": t.n_subtokens} for t in result.targets},
    }


@torch.inference_mode()
def answer_metrics(lm: LoadedModel, records: list[dict], batch_size: int = 64) -> dict:
    """Teacher-forced answer metrics on response tokens: CE, and exact match (every response token is the argmax,
    which is exactly when greedy decoding reproduces the response)."""
    encoded = encode_records(lm, records, mask_prompt=True, add_eos=False)
    losses, exact = [], 0
    for start in range(0, len(encoded), batch_size):
        batch = sft_batch(encoded[start : start + batch_size], lm.tokenizer.pad_token_id or 0, lm.device)
        logits = lm.bridge(batch.input_ids)
        losses.append(answer_loss(logits, batch.labels).item() * len(batch.lengths))
        pred = logits[:, :-1].argmax(-1)
        gold = batch.labels[:, 1:]
        mask = gold != -100
        exact += int(((pred == gold) | ~mask).all(dim=1).sum())
    return {"answer_loss": sum(losses) / len(encoded), "answer_exact_match": exact / len(encoded), "prompts": len(encoded)}

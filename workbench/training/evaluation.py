"""Held-out evaluation of a (trained) model: the lens at the classifier layer and answer accuracy."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ..core.arithmetic import answer_correct, first_integer
from ..core.errors import WorkbenchError
from ..core.generation import GREEDY_DECODING, greedy_answers
from ..core.guide import OPERATIONS
from ..core.layers import layer_of
from ..core.lens import logit_lens
from ..core.models import LoadedModel
from .losses import answer_loss, encode_records, sft_batch


def lens_metrics(
    lm: LoadedModel, records: list[dict], targets: dict[str, str], layer: int, batch_size: int = 64
) -> dict:
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
        "target_tokens": {
            t.word: {"token_id": t.token_id, "token": t.token, "n_subtokens": t.n_subtokens} for t in result.targets
        },
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
    return {
        "answer_loss": sum(losses) / len(encoded),
        "answer_exact_match": exact / len(encoded),
        "prompts": len(encoded),
    }


def greedy_eval(lm: LoadedModel, records: list[dict], max_new_tokens: int = 8) -> dict:
    """Greedy answers to held-out records: one row per record, correct when the first integer of the greedy
    completion equals the response (the guide's reward rule), and the fraction correct."""
    answers = greedy_answers(lm, [r["prompt"] for r in records], max_new_tokens, until_integer=True)
    rows = []
    for r, text in zip(records, answers):
        value = first_integer(text)
        rows.append(
            {
                "prompt": r["prompt"],
                "response": r["response"],
                "operation": r.get("operation"),
                "greedy": text,
                "answer": value,
                "correct": answer_correct(text, r["response"]),
            }
        )
    return {
        "decoding": GREEDY_DECODING,
        "max_new_tokens": max_new_tokens,
        "rows": rows,
        "accuracy": sum(r["correct"] for r in rows) / len(rows) if rows else None,
    }


CLASS_WORD_RULE = (
    "the class word whose first token has the highest final logit at the last prompt token (the lens at the last "
    "layer is the model's own output); greedy: the top token over the whole vocabulary"
)


def class_word_eval(lm: LoadedModel, records: list[dict], classes: dict[str, str]) -> dict:
    """The answer of a classification task: correct when, of the class words, the record's own is the most probable
    next token after the prompt. Rows and accuracy as ``greedy_eval`` writes them."""
    words = list(classes.values())
    expected = [classes[r["classification_target"]] for r in records]
    lens = logit_lens(lm, [r["prompt"] for r in records], words, lm.n_layers - 1, expected=expected)
    rows = []
    for r, row in zip(records, lens.results):
        answer = max(words, key=row.target_probs.get)
        rows.append(
            {
                "prompt": r["prompt"],
                "response": r["response"],
                "operation": r["classification_target"],
                "greedy": row.top_token,
                "answer": answer,
                "correct": answer == r["response"],
            }
        )
    return {
        "decoding": CLASS_WORD_RULE,
        "max_new_tokens": 1,
        "rows": rows,
        "accuracy": sum(r["correct"] for r in rows) / len(rows) if rows else None,
    }


def answer_eval(
    lm: LoadedModel, records: list[dict], answer: str, classes: dict[str, str], max_new_tokens: int = 8
) -> dict:
    """A task's final answer on held-out records: the computed result by greedy decoding (arithmetic, ``computed``)
    or the class word at the last position (``class_word``)."""
    if answer == "computed":
        return greedy_eval(lm, records, max_new_tokens)
    return class_word_eval(lm, records, classes)


def heldout_measurement(
    lm: LoadedModel,
    records: list[dict],
    known: dict | None = None,
    classes: dict[str, str] | None = None,
    answer: str = "computed",
) -> dict:
    """What the comparisons measure on held-out prompts: the lens at the classifier layer (``classes``' words; None:
    the four operation words), the teacher-forced answer metrics and answer accuracy (``answer_eval``). ``known``:
    parts a trainer has just measured on the same prompts (its metrics.json "after"), reused instead of measured
    again."""
    classes = classes or {op: op for op in OPERATIONS}
    known = known or {}
    lens = known.get("lens")
    if lens is not None and (lens["layer"] != lm.classifier_layer or lens["prompts"] != len(records)):
        raise ValueError(f"the trainer measured layer {lens['layer']} on {lens['prompts']} prompts, not these")
    lm.bridge.eval()
    with torch.inference_mode():
        lens = lens or lens_metrics(lm, records, classes, lm.classifier_layer)
        answers = known if "answer_exact_match" in known else answer_metrics(lm, records)
        greedy = (
            known["greedy_accuracy"]
            if "greedy_accuracy" in known
            else answer_eval(lm, records, answer, classes)["accuracy"]
        )
    return {
        "lens": lens,
        "answer_loss": answers["answer_loss"],
        "answer_exact_match": answers["answer_exact_match"],
        "prompts": answers["prompts"],
        "greedy_accuracy": greedy,
    }


def adapter_layer_changes(before_dir: str | Path, after_dir: str | Path) -> list[dict]:
    """Per layer, how far two saved adapters of the same shape differ: the largest absolute change of any LoRA weight
    in that layer (0.0 exactly when the layer was frozen). Raises when the adapters hold different tensors."""
    before = load_file(Path(before_dir) / "adapter_model.safetensors")
    after = load_file(Path(after_dir) / "adapter_model.safetensors")
    if set(before) != set(after):
        raise WorkbenchError(
            f"adapters {str(before_dir)!r} and {str(after_dir)!r} hold different tensors: compare adapters "
            "of the same LoRA configuration (phase 2 continues phase 1's)"
        )
    layers: dict[int, list[float]] = {}
    for key in before:
        layer = layer_of(key)
        if layer is not None:
            change = float((after[key].float() - before[key].float()).abs().max()) if before[key].numel() else 0.0
            layers.setdefault(layer, []).append(change)
    return [
        {"layer": layer, "tensors": len(changes), "max_abs_change": max(changes)}
        for layer, changes in sorted(layers.items())
    ]

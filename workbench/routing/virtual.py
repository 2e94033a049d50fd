"""Route, answer, time and score: the virtual-expert pipeline and its evaluation.

One prompt at a time, as a server would see them: the router decides (timed), the chosen expert answers (timed), and a
prompt the expert cannot answer (declined, raised, timed out) falls back to the model, recorded. Timings are
``time.perf_counter`` around each call; the first ``warmup`` prompts are decided and answered once untimed before
the timed pass.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from ..core.arithmetic import answer_correct
from ..core.generation import greedy_tokens
from ..core.models import LoadedModel
from .experts import Expert, calculator, call_expert
from .prompts import KINDS, NONE, RouteItem
from .routers import LABELS

ANSWER_TOKENS = 8  # the model's answer: greedy, at most this many tokens, stopped once its first integer is complete


@dataclass
class Routed:
    prompt: str
    router: str
    decision: str  # an operation, or "none" (the model answers)
    confidence: float
    blocks_run: int
    expert: str  # the expert that answered: "calculator" (or the user's) or "model"
    answer: str
    fallback: str | None  # why the chosen expert did not answer (then the model did)
    decision_s: float
    answer_s: float
    new_tokens: int  # tokens the model generated for the answer (0: an expert answered)
    detail: dict

    @property
    def total_s(self) -> float:
        return self.decision_s + self.answer_s

    def to_dict(self) -> dict:
        return asdict(self) | {"total_s": self.total_s}


def model_answer(lm: LoadedModel, prompt: str, max_new_tokens: int = ANSWER_TOKENS) -> tuple[str, int]:
    """The model's own greedy answer (KV cache, stopped once its first integer is complete) and its token count."""
    tokens = greedy_tokens(lm, [prompt], max_new_tokens, until_integer=True)[0]
    return lm.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens)


@torch.inference_mode()
def route(
    lm: LoadedModel,
    router,
    prompt: str,
    expert: Expert = calculator,
    expert_name: str = "calculator",
    timeout_s: float | None = 5.0,
    max_new_tokens: int = ANSWER_TOKENS,
) -> Routed:
    """Decide, then answer: the expert when the router picked an operation, else (or when the expert fails) the
    model."""
    start = time.perf_counter()
    decision = router.decide(lm, prompt)
    decided = time.perf_counter()
    answer, fallback, tokens, who = None, None, 0, "model"
    if decision.operation is not None:
        answer, fallback = call_expert(expert, prompt, decision.operation, timeout_s)
        who = expert_name if answer is not None else "model"
    if answer is None:
        answer, tokens = model_answer(lm, prompt, max_new_tokens)
    done = time.perf_counter()
    return Routed(
        prompt,
        router.name,
        decision.label,
        round(decision.confidence, 6),
        decision.blocks_run,
        who,
        answer,
        fallback,
        decided - start,
        done - decided,
        tokens,
        decision.detail,
    )


def warm_up(lm: LoadedModel, router, prompts: list[str]) -> None:
    """Untimed first calls (the router's decision and a one-token model answer) on ``prompts``; experts are not called,
    so a user's expert sees each prompt once."""
    for prompt in prompts:
        router.decide(lm, prompt)
        model_answer(lm, prompt, 1)


def route_all(lm: LoadedModel, router, prompts: list[str], warmup: int = 3, **options) -> list[Routed]:
    """``route`` over ``prompts`` in order, after warming up on the first ``warmup`` of them."""
    warm_up(lm, router, prompts[:warmup])
    return [route(lm, router, prompt, **options) for prompt in prompts]


@torch.inference_mode()
def forward_s(lm: LoadedModel, prompt: str) -> float:
    """Seconds of one plain forward of ``prompt`` through every block, to the logits: what early exit is compared
    with."""
    start = time.perf_counter()  # tokenizing included, as in every router's decision
    lm.bridge(torch.tensor([lm.token_ids(prompt)], device=lm.device))
    return time.perf_counter() - start


def full_forward_s(lm: LoadedModel, prompts: list[str], warmup: int = 3) -> list[float]:
    """``forward_s`` per prompt, after ``warmup`` untimed forwards."""
    for prompt in prompts[:warmup]:
        forward_s(lm, prompt)
    return [forward_s(lm, prompt) for prompt in prompts]


def spread(values: list[float]) -> dict:
    """Median, quartiles and count of a list of timings (seconds)."""
    if not values:
        return {"median": None, "q1": None, "q3": None, "n": 0}
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "n": len(values)}


def _correct(item: RouteItem, row: Routed) -> bool | None:
    """An arithmetic item's answer is right when its first integer is the exact answer (None for negatives)."""
    return None if item.answer is None else answer_correct(row.answer, str(item.answer))


def score(items: list[RouteItem], rows: list[Routed]) -> dict:
    """Routing accuracy, precision and recall of "needs the calculator", answer accuracy end to end, per kind and
    overall, the confusion matrix, and LayerSkip-style timings."""

    def block(pairs) -> dict:
        pairs = list(pairs)
        if not pairs:
            return {"n": 0}
        routed = [(i.operation is not None, r.decision != NONE) for i, r in pairs]
        tp, predicted, needed = (sum(a and b for a, b in routed), sum(b for _, b in routed), sum(a for a, _ in routed))
        answers = [c for c in (_correct(i, r) for i, r in pairs) if c is not None]
        return {
            "n": len(pairs),
            "routing_accuracy": sum(i.label == r.decision for i, r in pairs) / len(pairs),
            "precision": tp / predicted if predicted else None,
            "recall": tp / needed if needed else None,
            "answer_accuracy": sum(answers) / len(answers) if answers else None,
            "expert_call_rate": sum(r.expert != "model" for _, r in pairs) / len(pairs),
            "fallbacks": sum(r.fallback is not None for _, r in pairs),
        }

    pairs = list(zip(items, rows))
    tokens = sum(r.new_tokens for r in rows)
    model_time = sum(r.answer_s for r in rows if r.new_tokens)
    total = sum(r.total_s for r in rows)
    return {
        "overall": block(pairs),
        "by_kind": {kind: block(p for p in pairs if p[0].kind == kind) for kind in KINDS},
        "confusion": {
            "labels": list(LABELS),
            "counts": [[sum(i.label == t and r.decision == p for i, r in pairs) for p in LABELS] for t in LABELS],
        },
        "timing": {
            "decision_s": spread([r.decision_s for r in rows]),
            "answer_s": spread([r.answer_s for r in rows]),
            "total_s": spread([r.total_s for r in rows]),
            "total_time_s": total,
            "model_tokens": tokens,
            "time_per_token_s": model_time / tokens if tokens else None,
            "tokens_per_s": tokens / model_time if model_time else None,
        },
    }


def evaluate(
    lm: LoadedModel, router, items: list[RouteItem], warmup: int = 3, reference: bool = True, **options
) -> dict:
    """Every item routed and answered; the scores, the router's settings and one row per prompt. With ``reference``,
    a plain full forward of the same model is timed just before each decision (interleaved, so machine drift hits both
    alike) and ``timing`` gains its spread and ``decision_vs_full_forward`` (the ratio of the medians)."""
    prompts = [item.prompt for item in items]
    warm_up(lm, router, prompts[:warmup])
    if reference:
        full_forward_s(lm, prompts[:warmup], warmup=0)
    rows, forwards = [], []
    for prompt in prompts:
        if reference:
            forwards.append(forward_s(lm, prompt))
        rows.append(route(lm, router, prompt, **options))
    metrics = score(items, rows)
    if reference:
        timing = metrics["timing"]
        timing["full_forward_s"] = spread(forwards)
        timing["decision_vs_full_forward"] = timing["decision_s"]["median"] / timing["full_forward_s"]["median"]
    return {
        "router": router.describe(),
        "metrics": metrics,
        "rows": [
            item.to_dict() | row.to_dict() | ({"full_forward_s": f} if reference else {})
            for item, row, f in zip(items, rows, forwards or [None] * len(rows))
        ],
    }

"""Logit lens: the model's own final norm and unembedding applied to an intermediate residual stream.

At layer L and the last prompt token: softmax(unembed(ln_final(resid_post[L]))) over the whole vocabulary. A target
word is read through its first sub-token (recorded, with a warning, when the word is several tokens).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .activations import capture_last_token
from .arithmetic import infer_operation
from .errors import WorkbenchError
from .models import LoadedModel

LENS_METHOD = (
    "softmax(unembed(ln_final(blocks.L.hook_resid_post))), with the architecture's logit transform, at the last "
    "prompt token, full vocabulary"
)


@dataclass(frozen=True)
class TargetToken:
    word: str
    token_id: int
    token: str  # the sub-token actually read
    n_subtokens: int


def resolve_targets(lm: LoadedModel, words: list[str]) -> list[TargetToken]:
    """Map target words to the token the lens reads: the word's first sub-token (warns when it has several)."""
    if not words:
        raise WorkbenchError("no targets: pass --targets WORD at least once")
    if len(set(words)) != len(words):
        raise WorkbenchError(f"targets {words} repeat a word: give each target once")
    out = []
    unk = lm.tokenizer.unk_token_id
    for word in words:
        ids = lm.tokenizer(word, add_special_tokens=False).input_ids
        if not word.strip() or not ids:
            raise WorkbenchError(f"target {word!r} is empty: pass a word such as --targets multiply")
        if unk is not None and ids[0] == unk:
            raise WorkbenchError(
                f"target {word!r} is not in the model's vocabulary (it maps to the unknown token): pick another word"
            )
        if len(ids) > 1:
            pieces = lm.tokenizer.convert_ids_to_tokens(ids)
            warnings.warn(
                f"target {word!r} is {len(ids)} tokens {pieces}; the lens reads its first sub-token {pieces[0]!r}",
                stacklevel=2,
            )
        out.append(TargetToken(word, int(ids[0]), lm.tokenizer.decode([ids[0]]), len(ids)))
    return out


def lens_logits(lm: LoadedModel, resid: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_vocab"]:
    """[..., d_model] residuals -> [..., d_vocab] logits exactly as the model makes its own from its last layer: final
    norm, unembedding, and the architecture's post-unembedding transform, as TransformerLens's adapter declares it
    (Granite's ``logits_scaling``, Cohere's ``logit_scale``, Gemma-style soft-capping; nothing for Llama)."""
    norm = next(lm.bridge.ln_final.parameters())  # captures are fp32 on the CPU; the norm may be bf16 on a GPU
    logits = lm.bridge.unembed(lm.bridge.ln_final(resid.to(norm.device, norm.dtype)))
    transform = getattr(getattr(lm.bridge, "adapter", None), "apply_output_logits_transform", None)
    return transform(logits) if callable(transform) else logits


def lens_log_probs(lm: LoadedModel, resid: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_vocab"]:
    """[..., d_model] residuals -> [..., d_vocab] log-probabilities through the final norm and unembedding."""
    return torch.log_softmax(lens_logits(lm, resid).float(), dim=-1)


def ranks_of(log_probs: Float[Tensor, "n d_vocab"], token_ids: Int[Tensor, " k"]) -> Int[Tensor, "n k"]:
    """1-based rank of each token id in each distribution. log_probs: [n, vocab]; token_ids: [k] -> [n, k]."""
    chosen = log_probs[:, token_ids]  # [n, k]
    return (log_probs.unsqueeze(1) > chosen.unsqueeze(-1)).sum(-1) + 1


@dataclass
class PromptLens:
    prompt: str
    expected: str | None
    top_token: str
    top_token_id: int
    top_prob: float
    top_k: list[dict]
    target_probs: dict[str, float]
    target_ranks: dict[str, int]
    correct: bool | None  # top-1 token is the expected target's token (None when nothing is expected)


@dataclass
class LensResult:
    model: str
    layer: int
    num_layers: int
    targets: list[TargetToken]
    results: list[PromptLens]
    layers: list[int] = field(default_factory=list)  # filled with --all-layers
    layer_target_probs: dict[str, list[list[float]]] = field(default_factory=dict)  # word -> [layer][prompt]
    layer_target_ranks: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def scored(self) -> list[PromptLens]:
        return [r for r in self.results if r.expected is not None]

    @property
    def score(self) -> dict:
        scored = self.scored
        correct = sum(bool(r.correct) for r in scored)
        return {"correct": correct, "total": len(scored), "fraction": correct / len(scored) if scored else None}

    @property
    def mean_expected_prob(self) -> float | None:
        scored = self.scored
        return sum(r.target_probs[r.expected] for r in scored) / len(scored) if scored else None

    def expected_prob_by_layer(self) -> list[float]:
        """Mean probability of each prompt's expected target at every captured layer (needs --all-layers)."""
        scored = [i for i, r in enumerate(self.results) if r.expected is not None]
        return [
            sum(self.layer_target_probs[self.results[i].expected][li][i] for i in scored) / max(len(scored), 1)
            for li in range(len(self.layers))
        ]

    def to_dict(self) -> dict:
        out = {
            "model": self.model,
            "layer": self.layer,
            "num_layers": self.num_layers,
            "lens": LENS_METHOD,
            "targets": [asdict(t) for t in self.targets],
            "target_token_ids": {t.word: t.token_id for t in self.targets},
            "results": [asdict(r) for r in self.results],
            "score": self.score,
            "mean_expected_prob": self.mean_expected_prob,
        }
        if self.layers:
            out["all_layers"] = {
                "layers": self.layers,
                "target_probs": self.layer_target_probs,
                "target_ranks": self.layer_target_ranks,
                "mean_expected_prob": self.expected_prob_by_layer(),
            }
        return out


def expected_targets(prompts: list[str], targets: list[TargetToken], expected: list[str] | None) -> list[str | None]:
    """Each prompt's expected target word: given explicitly, else the operation its operator names (if a target).
    That default is the arithmetic source's reading of a prompt (``core.arithmetic.infer_operation``), kept here for
    prompts given without a task; a task's source gives its own expected words (``tasks.source``)."""
    words = {t.word for t in targets}
    if expected is not None:
        if len(expected) != len(prompts):
            raise WorkbenchError(
                f"--expected has {len(expected)} entries for {len(prompts)} prompts: give one per prompt"
            )
        for e in expected:
            if e not in words:
                raise WorkbenchError(
                    f"expected target {e!r} is not among --targets {sorted(words)}: add it with --targets"
                )
        return list(expected)
    by_stripped = {t.word.strip(): t.word for t in targets}
    return [by_stripped.get(infer_operation(p) or "") for p in prompts]


@torch.inference_mode()
def logit_lens(
    lm: LoadedModel,
    prompts: list[str],
    targets: list[str],
    layer: int | None = None,
    all_layers: bool = False,
    expected: list[str] | None = None,
    top_k: int = 5,
    batch_size: int = 64,
) -> LensResult:
    """Read targets through the vocabulary at ``layer`` (default: the classifier layer) for every prompt."""
    if not prompts:
        raise WorkbenchError('no prompts: pass --prompts "p1|p2"')
    layer = lm.classifier_layer if layer is None else layer
    if not 0 <= layer < lm.n_layers:
        raise WorkbenchError(f"layer {layer} is out of range: this model has layers 0-{lm.n_layers - 1}")
    tokens = resolve_targets(lm, targets)
    wanted = expected_targets(prompts, tokens, expected)
    layers = list(range(lm.n_layers)) if all_layers else [layer]
    resid = capture_last_token(lm, prompts, layers, batch_size)  # [prompt, layer, d]
    target_ids = torch.tensor([t.token_id for t in tokens], device=lm.device)

    log_probs = lens_log_probs(lm, resid[:, layers.index(layer)])  # [prompt, vocab]
    probs = log_probs.exp()
    ranks = ranks_of(log_probs, target_ids)
    top_p, top_i = probs.topk(top_k, dim=-1)
    by_word = {t.word: t for t in tokens}
    rows = []
    for i, prompt in enumerate(prompts):
        ids = top_i[i].tolist()
        rows.append(
            PromptLens(
                prompt=prompt,
                expected=wanted[i],
                top_token=lm.tokenizer.decode([ids[0]]),
                top_token_id=ids[0],
                top_prob=float(top_p[i, 0]),
                top_k=[
                    {"token": lm.tokenizer.decode([t]), "token_id": t, "prob": float(p)}
                    for t, p in zip(ids, top_p[i].tolist())
                ],
                target_probs={t.word: float(probs[i, t.token_id]) for t in tokens},
                target_ranks={t.word: int(ranks[i, j]) for j, t in enumerate(tokens)},
                correct=None if wanted[i] is None else ids[0] == by_word[wanted[i]].token_id,
            )
        )
    result = LensResult(lm.model_id, layer, lm.n_layers, tokens, rows)
    if all_layers:
        result.layers = layers
        result.layer_target_probs = {t.word: [] for t in tokens}
        result.layer_target_ranks = {t.word: [] for t in tokens}
        for li in range(len(layers)):
            lp = log_probs if layers[li] == layer else lens_log_probs(lm, resid[:, li])
            r = ranks_of(lp, target_ids)
            p = lp[:, target_ids].exp()
            for j, t in enumerate(tokens):
                result.layer_target_probs[t.word].append(p[:, j].tolist())
                result.layer_target_ranks[t.word].append(r[:, j].tolist())
    return result

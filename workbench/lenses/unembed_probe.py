"""The probe through the unembedding: the best affine map ``x = A h + b`` from a layer's state into the residual
space the model unembeds, such that the class words' logits ``W_U[c] x + b_U[c]`` classify the prompt's class. Its
readout is ``unembed(x)`` over the whole vocabulary.

Fit: mean cross-entropy among the class words' logits plus ``||A||^2 / (2 C n)`` on standardised states, the intercept
unpenalised (scikit-learn's objective, C = 1 as for the linear probe), by L-BFGS in float64. Directions of ``A``'s
output orthogonal to the class words' unembedding rows change no class logit and only add to the penalty, so the
optimal ``A`` has rank at most k (the number of class words): it is fitted in that span (exactly, not as an
approximation), as ``basis @ coef``, and ``b`` is taken in the same span (the minimum-norm intercept).

No final norm: the class logits are then affine in ``A, b`` (a convex fit with one optimum), the readout's class-word
logits are exactly the probe's classifier logits, and the scale of ``x`` (the probe's confidence) stays the probe's
own; RMSNorm would divide it out and make the fit non-convex, and its gain is a diagonal map ``A`` can absorb. No
logit soft-cap either (monotone: the classifications would not change).

Accuracy is cross-validated exactly as the linear probe's (``core.probes``: stratified folds, and its control task:
random labels with the class sizes kept, over the same number of permutations), so its gap to the linear probe and
its selectivity read on the same footing.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..core.errors import WorkbenchError
from ..core.lens import resolve_targets
from ..core.logistic import C, standardize
from ..core.models import LoadedModel
from ..core.probes import cv_folds, n_folds, probe_layer, task_labels

UNEMBED_PROBE_METHOD = (
    "x = A h + b, A of rank <= k in the class words' unembedding span; L-BFGS on mean cross-entropy among "
    "W_U[class] x + b_U[class] + ||A||^2 / (2 C n) on standardised states (intercept unpenalised); "
    "readout = unembed(x), no final norm"
)
MAX_ITER = 500


class UnembedProbe:
    """The fitted map at one layer, and how well it classifies (``accuracy``: cross-validated, as the linear probe's;
    ``control_accuracy``: the same on the control task; ``train_accuracy``: the final fit on all prompts)."""

    name = "unembed_probe"

    def __init__(self, lm: LoadedModel, layer: int, classes: list[str], words: list[str], class_ids: Tensor,
                 basis: Tensor, coef: Tensor, offset: Tensor, scores: dict, c: float):  # fmt: skip
        self.lm, self.layer, self.classes, self.words, self.class_ids = lm, layer, classes, words, class_ids
        self.basis, self.coef, self.offset = basis, coef, offset  # x = (h @ coef.T + offset) @ basis.T
        self.c = c
        self.scores = scores
        self.accuracy: float = scores["accuracy"]
        self.control_accuracy: float = scores["control_accuracy"]
        self.selectivity: float = self.accuracy - self.control_accuracy
        self.train_accuracy: float = scores["train_accuracy"]
        self.linear_accuracy: float | None = scores.get("linear_accuracy")

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def target(self, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        """``A h + b``: where the probe puts the state, in the residual space the model unembeds (float64)."""
        return (resid.double().cpu() @ self.coef.T + self.offset) @ self.basis.T

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        if layer != self.layer:
            raise WorkbenchError(f"this probe was fitted at layer {self.layer}, not {layer}: fit one per layer")
        w_u = self.lm.bridge.W_U
        return self.lm.bridge.unembed(self.target(resid).to(w_u.device, w_u.dtype)).float().cpu()

    def predict(self, resid: Float[Tensor, "n d_model"]) -> list[str]:
        """The class whose word has the highest logit among the class words."""
        return [self.classes[i] for i in self.logits(self.layer, resid)[:, self.class_ids].argmax(-1).tolist()]

    def provenance(self) -> dict:
        return {
            "layer": self.layer,
            "n_prompts": self.scores["n"],
            "class_words": dict(zip(self.classes, self.words)),
            "C": self.c,
            "rank": self.rank,
            "folds": self.scores["folds"],
            "cv_accuracy": self.accuracy,
            "control_accuracy": self.control_accuracy,
            "selectivity": self.selectivity,
            "train_accuracy": self.train_accuracy,
            "linear_accuracy": self.linear_accuracy,
            "method": UNEMBED_PROBE_METHOD,
        }


def _class_rows(lm: LoadedModel, class_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The class words' unembedding rows [k, d] and biases [k], and an orthonormal basis [d, r] of the rows' span."""
    rows = lm.bridge.W_U[:, class_ids].detach().double().cpu().T
    bias = getattr(lm.bridge, "b_U", None)
    bias = torch.zeros(len(class_ids)) if bias is None else bias[class_ids]
    left, sing, _ = torch.linalg.svd(rows.T, full_matrices=False)
    rank = int((sing > sing[0] * 1e-10).sum())
    return rows, bias.detach().double().cpu(), left[:, :rank]


def _fit(h: Tensor, y: Tensor, rows: Tensor, bias: Tensor, basis: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """(coef [r, d], offset [r]) in raw state units: ``x = basis (coef h + offset)`` minimising the objective."""
    mean, scale = (t[0, 0] for t in standardize(h[None], torch.ones(1, len(h), dtype=h.dtype)))
    z = (h - mean) / scale
    mix = rows @ basis  # [k, r]: class logits = mix (M z + m) + bias
    coef = torch.zeros(basis.shape[1], h.shape[1], dtype=h.dtype, requires_grad=True)
    offset = torch.zeros(basis.shape[1], dtype=h.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([coef, offset], max_iter=MAX_ITER, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        logits = (z @ coef.T + offset) @ mix.T + bias
        loss = torch.nn.functional.cross_entropy(logits, y) + (coef**2).sum() / (2 * c * len(h))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    coef, offset = coef.detach(), offset.detach()
    return coef / scale, offset - coef @ (mean / scale)


def _accuracy(h, y, rows, bias, basis, coef, offset) -> float:
    logits = (h @ coef.T + offset) @ (rows @ basis).T + bias
    return float((logits.argmax(-1) == y).double().mean())


def fit_unembed_probe(
    lm: LoadedModel,
    states: Float[Tensor, "n d_model"],
    labels: list[str],
    class_words: dict[str, str] | list[str],
    layer: int,
    *,
    c: float = C,
    seed: int = 0,
    compare_linear: bool = True,
) -> UnembedProbe:
    """Fit the probe on ``states`` (the layer's states at the last prompt token) labelled ``labels``.

    ``class_words``: each class's word (a dict), or the words themselves when the labels are the words (a list); a
    word is read through its first sub-token, as the lens reads it. Cross-validated accuracy on the task and on the
    control task as ``core.probes`` folds and permutes; then one fit on all prompts, which is the readout.
    ``compare_linear``: also the linear probe's accuracy on the same states (``core.probes.probe_layer``)."""
    labels = [str(label) for label in labels]
    words = dict(class_words) if isinstance(class_words, dict) else {w: w for w in class_words}
    classes = list(words)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise WorkbenchError(f"labels {unknown} have no class word: give each class a word ({', '.join(classes)})")
    if len(set(labels)) < 2 or min(labels.count(cls) for cls in set(labels)) < 2:
        raise WorkbenchError("the probe needs at least two classes with at least two prompts each")
    class_ids = torch.tensor([t.token_id for t in resolve_targets(lm, [words[cls] for cls in classes])])
    rows, bias, basis = _class_rows(lm, class_ids)
    h = torch.as_tensor(np.asarray(states), dtype=torch.float64)
    if h.shape != (len(labels), lm.d_model):
        raise WorkbenchError(f"states have shape {tuple(h.shape)}: expected one [d_model={lm.d_model}] row per label")
    index = {cls: i for i, cls in enumerate(classes)}
    k = n_folds(labels)
    folds = []
    for y_names in task_labels(labels, seed):  # the task, then its control permutations
        y = torch.tensor([index[str(name)] for name in y_names])
        folds.append([
            _accuracy(h[val], y[val], rows, bias, basis, *_fit(h[train], y[train], rows, bias, basis, c))
            for train, val in cv_folds(np.asarray(y_names), k, seed)
        ])  # fmt: skip
    y = torch.tensor([index[name] for name in labels])
    coef, offset = _fit(h, y, rows, bias, basis, c)
    scores = {
        "n": len(labels),
        "folds": k,
        "accuracy": float(np.mean(folds[0])),
        "fold_accuracies": folds[0],
        "control_accuracy": float(np.mean([np.mean(f) for f in folds[1:]])),
        "train_accuracy": _accuracy(h, y, rows, bias, basis, coef, offset),
    }
    if compare_linear:
        scores["linear_accuracy"] = probe_layer(h.numpy(), labels, layer, seed).accuracy
    return UnembedProbe(lm, layer, classes, [words[cls] for cls in classes], class_ids, basis, coef, offset, scores, c)

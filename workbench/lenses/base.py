"""What every readout is: a map from a layer's residual stream at the last prompt token to logits over the whole
vocabulary, and the one way the ladder scores it (``score``): top-1 among the class words, p(class word) over the
vocabulary and its rank, per prompt, with the prompts' spread.

A readout is fitted (or not) once per model and layer set, then read: ``readout.logits(layer, resid)``. The logit lens
is the identity readout; the others map the state before the model's own final norm and unembedding (``lens_logits``),
or, for Patchscope, run the model on a target prompt with the state patched in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from jaxtyping import Float, Int
from scipy import stats
from torch import Tensor

from ..core.lens import lens_logits, ranks_of
from ..core.models import LoadedModel


class Readout(Protocol):
    name: str  # "logit", "shortcut", "tuned", "jacobian", "patchscope", "unembed_probe"

    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        """Logits over the vocabulary that this readout reads from ``resid`` (states after block ``layer``)."""
        ...

    def provenance(self) -> dict:
        """How it was made: what it was fitted on, how many tokens or prompts, the settings (empty when not fitted)."""
        ...


class LogitLens:
    """The model's own final norm and unembedding, applied to the layer's state (no fit)."""

    name = "logit"

    def __init__(self, lm: LoadedModel):
        self.lm = lm

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        return lens_logits(self.lm, resid).float()

    def provenance(self) -> dict:
        return {}


@dataclass
class Score:
    """One readout at one layer over a set of prompts."""

    readout: str
    layer: int
    top1: float  # share of prompts whose expected class word has the highest logit among the class words
    top1_ci: tuple[float, float]  # its 95% Wilson interval over the prompts
    p_expected: float  # mean p(expected class word) over the whole vocabulary
    p_std: float  # its standard deviation over the prompts
    rank: float  # mean rank of the expected class word in the whole vocabulary (1 = top)
    n: int  # prompts

    def as_dict(self) -> dict:
        return asdict(self)


def score(
    readout: Readout,
    layer: int,
    resid: Float[Tensor, "n d_model"],
    class_ids: Int[Tensor, " k"],
    expected: Int[Tensor, " n"],
) -> Score:
    """``expected[i]`` is the index into ``class_ids`` of prompt i's class word."""
    logits = readout.logits(layer, resid).float()
    log_probs = torch.log_softmax(logits, dim=-1)
    among = logits[:, class_ids].argmax(-1)
    rows = torch.arange(len(expected))
    p = log_probs[rows, class_ids[expected]].exp()
    ranks = ranks_of(log_probs, class_ids)[rows, expected].float()
    hits = int((among == expected).sum())
    ci = stats.binomtest(hits, len(expected)).proportion_ci(method="wilson")
    return Score(
        readout.name,
        layer,
        hits / len(expected),
        (float(ci.low), float(ci.high)),
        float(p.mean()),
        float(p.std()) if len(p) > 1 else 0.0,
        float(ranks.mean()),
        len(p),
    )

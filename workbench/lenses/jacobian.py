"""The Jacobian lens (Gurnee et al. 2026), through TransformerLens 4.3's ``JacobianLens``: per layer l, the mean over
prompts of the Jacobian of the last block's output (before the final norm) with respect to block l's output, read as
``lens_logits(J_l h)`` (the model's final norm and unembedding after the transport). The last layer is the identity:
there it is the logit lens.

TransformerLens's estimator (its ``fit``, used as is): for each prompt, one forward and ``ceil(d_model / dim_batch)``
backward passes, each a one-hot cotangent on ``dim_batch`` output dimensions at every valid position. The valid
positions are ``skip_first_positions`` and on, the final one excluded (it has no next token); the row for a valid
source position t sums its effects on the valid positions t' >= t, and is averaged over the valid source positions and
then over prompts. So a prompt's last token takes no part: fit on the prompts followed by their answers to count it.

Index l is ``blocks.{l}.hook_out``, the same hook point as ``blocks.{l}.hook_resid_post`` on the bridge (where the
workbench reads its states). TransformerLens tokenizes with ``to_tokens``, which prepends a BOS token by default; the
fit here runs with that off, so its prompts are tokenized as ``LoadedModel.token_ids`` tokenizes every prompt.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.tools.analysis.jacobian_lens import JacobianLens

from ..core.errors import WorkbenchError
from ..core.layers import check_layers
from ..core.lens import lens_logits
from ..core.models import LoadedModel

SKIP_FIRST_POSITIONS = 1  # the first token (an attention sink); TransformerLens's 16 is for 128-token prompts
DIM_BATCH = 8  # TransformerLens's default: output dimensions per backward pass (the prompt is replicated this often)


class JacobianReadout:
    """Readout: ``lens_logits(J_l h)`` at a fitted layer l, the logit lens at the last layer. ``lens`` is
    TransformerLens's ``JacobianLens`` (None when only the last layer was asked for)."""

    name = "jacobian"

    def __init__(self, lm: LoadedModel, lens: JacobianLens | None, fit_seconds: float | None = None):
        self.lm, self.lens, self.fit_seconds = lm, lens, fit_seconds

    @property
    def layers(self) -> list[int]:
        """The layers it reads: the fitted ones and the last (the identity)."""
        return [*(self.lens.source_layers if self.lens else []), self.lm.n_layers - 1]

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        check_layers([layer], self.lm.n_layers)
        if layer == self.lm.n_layers - 1:
            return lens_logits(self.lm, resid).float()
        if layer not in self.layers:
            raise WorkbenchError(
                f"the Jacobian lens was not fitted at layer {layer} (it reads layers {self.layers}): "
                f"fit it with layer {layer} among its layers"
            )
        return lens_logits(self.lm, self.lens.transport(resid.to(self.lm.device), layer)).float()

    def provenance(self) -> dict:
        if self.lens is None:
            return {}
        keys = ("estimator", "corpus", "dim_batch", "max_seq_len", "skip_first_positions", "fit_dtype")
        return {
            "n_prompts": self.lens.n_prompts,
            "layers": self.lens.source_layers,
            **{key: self.lens.metadata[key] for key in keys if key in self.lens.metadata},
            "tokenization": "LoadedModel.token_ids (no BOS added by to_tokens)",
            "transformer_lens": self.lens.metadata.get("transformer_lens_version"),
            **({"fit_seconds": round(self.fit_seconds, 2)} if self.fit_seconds is not None else {}),
        }

    def save(self, path: str | Path) -> None:
        """TransformerLens's artifact format, in float32 (its default float16 rounds the matrices)."""
        if self.lens is None:
            raise WorkbenchError("nothing to save: this Jacobian lens reads only the last layer (the identity)")
        self.lens.save(str(path), dtype=torch.float32)

    @classmethod
    def load(cls, lm: LoadedModel, path: str | Path) -> JacobianReadout:
        """A saved lens, checked against the model (its name, width and layers) by TransformerLens."""
        return cls(lm, JacobianLens.load(str(path)).validate_model(lm.bridge))


@contextmanager
def _no_added_bos(bridge):
    """``bridge.to_tokens`` as ``LoadedModel.token_ids``: the tokenizer's own special tokens, no BOS added on top."""
    saved = bridge.cfg.default_prepend_bos
    bridge.cfg.default_prepend_bos = False
    try:
        yield
    finally:
        bridge.cfg.default_prepend_bos = saved


def fit_jacobian_lens(
    lm: LoadedModel,
    prompts: list[str],
    layers: list[int] | None = None,
    *,
    corpus: str = "workbench prompts",
    dim_batch: int = DIM_BATCH,
    max_seq_len: int = 128,
    skip_first_positions: int = SKIP_FIRST_POSITIONS,
    show_progress: bool = False,
) -> JacobianReadout:
    """Fit TransformerLens's ``JacobianLens`` on ``prompts`` at ``layers`` (default: all; the last layer needs no fit).

    Cost: per prompt one forward and ``ceil(d_model / dim_batch)`` backward passes from the last block down to the
    earliest requested layer (one backward serves every requested layer at once), each over ``dim_batch`` copies of
    the prompt. A prompt of ``skip_first_positions + 1`` tokens or fewer has no source position: TransformerLens warns
    and skips it."""
    layers = list(range(lm.n_layers)) if layers is None else sorted(set(layers))
    check_layers(layers, lm.n_layers)
    sources = [layer for layer in layers if layer < lm.n_layers - 1]
    if not sources:
        return JacobianReadout(lm, None)
    start = time.perf_counter()
    try:
        with _no_added_bos(lm.bridge):
            lens = JacobianLens.fit(lm.bridge, prompts, corpus=corpus, source_layers=sources, dim_batch=dim_batch,
                                    max_seq_len=max_seq_len, skip_first_positions=skip_first_positions,
                                    show_progress=show_progress)  # fmt: skip
    except ValueError as exc:  # every prompt too short, or a bridge TransformerLens refuses
        raise WorkbenchError(f"cannot fit the Jacobian lens: {str(exc).splitlines()[0]}") from None
    return JacobianReadout(lm, lens, time.perf_counter() - start)

"""Patchscope (Ghandeharioun et al. 2024, arXiv 2401.06102): a layer's state read by the model itself.

The state after block L (from the source prompt, last token) is written into a neutral target prompt at a placeholder
position, at the same layer (``blocks.L.hook_resid_post``), and the model runs on from there; the readout is the
target's output logits at the placeholder (the next-token distribution there). The default target is the paper's
token-identity prompt, whose placeholder ``?`` is its last token: the model is asked to repeat what the patched state
encodes. The target prompt is data (a parameter); the placeholder is always its last token.

At the last layer the patch goes in after the last block, so the readout is the logit lens exactly.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.activations import resid_hook_name
from ..core.layers import check_layers
from ..core.models import LoadedModel

IDENTITY_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
PATCHSCOPE_METHOD = (
    "the source state (blocks.L.hook_resid_post, last prompt token) replaces the target prompt's state at its last "
    "token at the same layer; the model runs on; readout = the target's output logits at that token"
)


class Patchscope:
    """Readout: the model's own next-token logits at the target prompt's last token, with that position's state after
    block ``layer`` replaced by the state read. No fit."""

    name = "patchscope"

    def __init__(self, lm: LoadedModel, target_prompt: str = IDENTITY_PROMPT, batch_size: int = 32):
        self.lm, self.target_prompt, self.batch_size = lm, target_prompt, batch_size
        self.ids = lm.tokenize([target_prompt]).input_ids  # [1, seq]; refuses an empty or too long prompt
        self.position = self.ids.shape[1] - 1

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        check_layers([layer], self.lm.n_layers)
        chunks = [self._run(layer, resid[start : start + self.batch_size])
                  for start in range(0, resid.shape[0], self.batch_size)]  # fmt: skip
        return torch.cat(chunks) if chunks else torch.empty(0, self.lm.bridge.cfg.d_vocab)

    def _run(self, layer: int, states: Float[Tensor, "b d_model"]) -> Float[Tensor, "b d_vocab"]:
        """One forward over the target prompt repeated once per state, each row patched with its own state."""

        def patch(resid, hook):
            resid = resid.clone()
            resid[:, self.position] = states.to(resid.device, resid.dtype)
            return resid

        ids = self.ids.expand(states.shape[0], -1)
        logits = self.lm.bridge.run_with_hooks(ids, fwd_hooks=[(resid_hook_name(layer), patch)], use_cache=False)
        return logits[:, self.position].float().cpu()

    def provenance(self) -> dict:
        token = self.lm.tokenizer.decode([int(self.ids[0, self.position])])
        return {
            "target_prompt": self.target_prompt,
            "position": self.position,
            "placeholder_token": token,
            "method": PATCHSCOPE_METHOD,
        }

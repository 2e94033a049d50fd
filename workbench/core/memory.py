"""Memory a command needs, estimated before the model loads, so that a run too big is refused with one line instead of
dying of OOM halfway.

The estimate counts weights in the chosen dtype (parameters counted on the meta device: exact for any architecture),
LoRA weights, their gradients and AdamW state in fp32 (peft keeps LoRA fp32 on a bf16 base), and activations for the
batch and sequence length. Activations follow Korthikanti et al. (2022) per layer, adapted to a gated MLP and to the
bridge's eager attention (it keeps the S x S probabilities of every head for backward, and computes its softmax in
fp32): ``s*b*(13 h + 6 f)`` elements plus ``heads * s^2 * b * (element size + 2)`` bytes, and the logits in fp32.
Measured against the real step (docs/performance.md), it errs on the safe side. With gradient
checkpointing only each layer's input is kept, plus one layer recomputed at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psutil
import torch

from .errors import WorkbenchError
from .layers import layer_of

GIB = 1024**3


def _meta_model(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def lora_parameters(config, targets: list[str], rank: int, frozen_layers: frozenset[int] = frozenset()) -> int:
    """Parameters LoRA of ``rank`` adds on the linears named ``targets`` (r x (in + out) each), outside frozen layers."""

    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in _meta_model(config).named_modules()
        if isinstance(m, torch.nn.Linear)
        and name.split(".")[-1] in targets
        and layer_of(name + ".") not in frozen_layers
    )


@dataclass(frozen=True)
class Shape:
    parameters: int
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    vocab: int

    @classmethod
    def of(cls, config) -> Shape:
        model = _meta_model(config)
        return cls(
            parameters=sum(p.numel() for p in model.parameters()),
            n_layers=int(config.num_hidden_layers),
            d_model=int(config.hidden_size),
            d_mlp=int(getattr(config, "intermediate_size", 4 * config.hidden_size)),
            n_heads=int(config.num_attention_heads),
            vocab=int(config.vocab_size),
        )


@dataclass(frozen=True)
class Estimate:
    weights: int
    trainable: int  # trainable weights kept in fp32 (LoRA), or the full model's when not LoRA
    gradients_and_optimizer: int
    activations: int
    what: str

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.gradients_and_optimizer + self.activations

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def estimate(
    shape: Shape,
    dtype: torch.dtype,
    batch: int,
    seq: int,
    training: bool = False,
    trainable_params: int = 0,
    full_finetune: bool = False,
    checkpointing: bool = False,
    n_shards: int = 1,
) -> Estimate:
    """Bytes a forward (``training=False``, no grad) or a training step needs on one device (``n_shards``: FSDP)."""
    size = torch.finfo(dtype).bits // 8
    weights = shape.parameters * size // n_shards
    s, b, h, f = seq, batch, shape.d_model, shape.d_mlp
    per_layer = (13 * h + 6 * f) * s * b * size + shape.n_heads * s * s * b * (size + 2)
    logits = b * s * shape.vocab * 4
    if not training:
        return Estimate(weights, 0, 0, per_layer // 4 + logits, f"forward of {b} x {s} tokens")
    if full_finetune:
        trainable, grads = 0, shape.parameters * (size + 8) // n_shards  # grads in the weights' dtype, Adam m, v fp32
    else:
        trainable, grads = trainable_params * 4, trainable_params * 12  # fp32 LoRA, its grads and Adam m, v
    kept = shape.n_layers * s * b * h * size + per_layer if checkpointing else shape.n_layers * per_layer
    return Estimate(weights, trainable, grads, kept + 2 * logits, f"training step of {b} x {s} tokens")


def free_bytes(device: str) -> int:
    """Memory available on a device now: CUDA's free memory, or the host's available RAM for the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return int(psutil.virtual_memory().available)


def check_fits(est: Estimate, device: str, fixes: str, free: int | None = None) -> None:
    """Refuse a run whose estimate exceeds the free memory: one line with the estimate, the free memory and fixes."""
    free = free_bytes(device) if free is None else free
    if est.total > free:
        parts = f"weights {est.weights / GIB:.1f} GiB, activations {est.activations / GIB:.1f} GiB"
        if est.gradients_and_optimizer:
            parts += f", trainable + optimizer {(est.trainable + est.gradients_and_optimizer) / GIB:.1f} GiB"
        raise WorkbenchError(
            f"this {est.what} needs about {est.total / GIB:.1f} GiB ({parts}) but {device} has "
            f"{free / GIB:.1f} GiB free: {fixes}"
        )

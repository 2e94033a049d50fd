"""Ablation of a trained adapter: switch its LoRA off per layer or per module group, and re-measure.

A peft LoRA layer computes ``base(x) + lora_B(lora_A(x)) * scaling``; with ``scaling`` set to 0 it is the base layer
exactly. ``without_lora`` does that for the chosen (layer, module) pairs inside a ``with`` block and restores every
scaling after it, even on an error. Which layers carry the classifier: the lens (and the answers) with each layer's
LoRA removed, against the adapter whole and the base model.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..core.errors import WorkbenchError
from ..core.generation import greedy_answers
from ..core.layers import check_layers
from ..core.lens import logit_lens
from ..core.models import LoadedModel

GROUPS = {"vo": ("v_proj", "o_proj"), "qk": ("q_proj", "k_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
_LAYER_RE = re.compile(r"\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)$")


def lora_modules(lm: LoadedModel) -> dict[tuple[int, str], object]:
    """Every LoRA layer of the loaded adapter by (layer, module name, e.g. "v_proj")."""
    from peft.tuners.lora import LoraLayer

    if lm.peft_model is None:
        raise WorkbenchError("the model has no adapter: pass --adapter DIR (a trained peft adapter) to ablate")
    found = {}
    for name, module in lm.hf_model.named_modules():
        match = _LAYER_RE.search(name.replace("._original_component", ""))  # the bridge wraps HF modules in place
        if match and isinstance(module, LoraLayer):
            found[(int(match.group(1)), match.group(2))] = module
    if not found:
        raise WorkbenchError(f"adapter {lm.adapter!r} has no LoRA layers on decoder layers: nothing to ablate")
    return found


def select(lm: LoadedModel, layers: list[int] | None = None, modules: list[str] | None = None) -> list[tuple[int, str]]:
    """The (layer, module) pairs to switch off: ``modules`` are names (v_proj) or groups (vo, qk, mlp); None: all."""
    present = lora_modules(lm)
    names = None
    if modules is not None:
        names = {n for m in modules for n in GROUPS.get(m, (m,))}
        have = sorted({module for _, module in present})
        missing = sorted(names - set(have))
        if missing:
            groups = ", ".join(f"{k}={'+'.join(v)}" for k, v in GROUPS.items())
            raise WorkbenchError(
                f"adapter {lm.adapter!r} has no LoRA on {', '.join(missing)}: it has {', '.join(have)} "
                f"(groups: {groups})"
            )
    if layers is not None:
        check_layers(layers, lm.n_layers)
    return [
        key for key in sorted(present) if (layers is None or key[0] in layers) and (names is None or key[1] in names)
    ]


@contextmanager
def without_lora(lm: LoadedModel, pairs: list[tuple[int, str]]):
    """Inside: the LoRA of each (layer, module) pair contributes nothing (its scaling is 0); restored after."""
    present = lora_modules(lm)
    saved = []
    try:
        for key in pairs:
            module = present[key]
            saved.append((module, dict(module.scaling)))
            for adapter in module.scaling:
                module.scaling[adapter] = 0.0
        yield
    finally:
        for module, scaling in saved:
            module.scaling.update(scaling)


@dataclass(frozen=True)
class Readout:
    """What an ablation sweep re-measures: the lens at ``layer`` over ``prompts`` (mean p of each prompt's
    ``expected`` class word among ``targets``, top-1 share) and, with ``max_new_tokens``, the greedy answers."""

    lm: LoadedModel
    prompts: list[str]
    targets: list[str]
    expected: list[str] | None
    layer: int
    max_new_tokens: int

    @classmethod
    def at(
        cls,
        lm: LoadedModel,
        prompts: list[str],
        targets: list[str],
        expected: list[str] | None,
        readout_layer: int | None,
        max_new_tokens: int,
    ) -> Readout:
        """The readout at ``readout_layer`` (default: the classifier layer), refused in one line when out of range."""
        layer = lm.classifier_layer if readout_layer is None else readout_layer
        check_layers([layer], lm.n_layers, "--readout-layer")
        return cls(lm, prompts, targets, expected, layer, max_new_tokens)

    @torch.inference_mode()
    def measure(self) -> dict:
        lens = logit_lens(self.lm, self.prompts, self.targets, layer=self.layer, expected=self.expected)
        answers = greedy_answers(self.lm, self.prompts, self.max_new_tokens) if self.max_new_tokens else None
        return {"lens_expected_p": lens.mean_expected_prob, "lens_top1": lens.score["fraction"], "answers": answers}

    def under(self, context, base: dict) -> dict:
        """``measure()`` inside ``context``, with how it moved from ``base``: the change in mean expected-word p and
        the share of greedy answers that changed."""
        with context:
            out = self.measure()
        if base["lens_expected_p"] is not None and out["lens_expected_p"] is not None:
            out["delta_expected_p"] = out["lens_expected_p"] - base["lens_expected_p"]
        if base["answers"] is not None:
            out["answers_changed"] = sum(a != b for a, b in zip(out["answers"], base["answers"])) / len(out["answers"])
        return out


def ablation_sweep(
    lm: LoadedModel,
    prompts: list[str],
    targets: list[str],
    expected: list[str] | None = None,
    readout_layer: int | None = None,
    per: str = "layer",
    modules: list[str] | None = None,
    max_new_tokens: int = 8,
) -> dict:
    """The lens at ``readout_layer`` (mean p of each prompt's expected class word, top-1 share) and the greedy answers
    with the whole adapter, with none of it, and with each layer's (``per="layer"``) or each module's
    (``per="module"``) LoRA removed; ``modules`` restricts which modules are removed."""
    if per not in ("layer", "module"):
        raise WorkbenchError(f"--per {per!r}: use layer or module")
    readout = Readout.at(lm, prompts, targets, expected, readout_layer, max_new_tokens)
    pairs = select(lm, None, modules)
    whole = readout.measure()
    with without_lora(lm, select(lm)):
        none = readout.measure()
    groups: dict[str, list[tuple[int, str]]] = {}
    for key in pairs:
        groups.setdefault(f"L{key[0]}" if per == "layer" else key[1], []).append(key)
    rows = [
        {
            "removed": name,
            "modules": [f"L{lay}.{mod}" for lay, mod in removed],
            **readout.under(without_lora(lm, removed), whole),
        }
        for name, removed in groups.items()
    ]
    return {
        "adapter": lm.adapter,
        "readout_layer": readout.layer,
        "per": per,
        "modules": modules,
        "targets": targets,
        "prompts": prompts,
        "whole_adapter": whole,
        "no_adapter": none,
        "rows": rows,
    }

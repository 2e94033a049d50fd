"""Training configuration: the guide's YAML schema, validated (unknown keys and wrong types are one-line errors)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.data import read_yaml
from ..core.errors import WorkbenchError
from ..core.guide import DUAL_REWARD_WEIGHT, OPERATIONS

THROUGH_CLASSIFIER = "through-classifier"


class IntermediateLoss(BaseModel):
    """Dual-reward auxiliary loss: CE of the logit lens at ``layer`` (last prompt token) against the op's target word."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    layer: int | Literal["auto"] = "auto"
    weight: float = Field(DUAL_REWARD_WEIGHT, ge=0.0, le=1.0)
    targets: dict[str, str] = Field(default_factory=lambda: {op: op for op in OPERATIONS})


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    adapter: str | None = None  # continue from a saved peft adapter
    output: str = "checkpoints/run"
    data: str = "data/arithmetic_sft.jsonl"
    eval_data: str | None = None  # default: held-out prompts generated with another seed

    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs when given (as in HF's Trainer)
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(1.0, ge=0)  # 0 or None: no clipping (the guide sets none)
    seed: int = 42

    use_lora: bool = True
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float | None = None  # default: 2 * rank
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: str = "v_proj,o_proj"

    freeze_layers: str | None = None  # "0-12", "0,1,2" or "through-classifier" (0 through the classifier layer)
    # None: as docs/concepts.md defines the losses, the dual-reward answer term covers response tokens only, so the prompt
    # is masked when intermediate_loss is enabled and not otherwise. An explicit value always wins.
    mask_prompt: bool | None = None
    intermediate_loss: IntermediateLoss = Field(default_factory=IntermediateLoss)

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # of the base weights; LoRA stays fp32
    gradient_checkpointing: bool = False  # non-reentrant; hooks stay on through backward
    fsdp: bool = False  # shard with FSDP2 (fully_shard) under torchrun; else DDP when there are several ranks

    save_every: int | None = Field(None, ge=1)
    resume: bool = False
    eval_samples: int = Field(200, ge=1)

    @field_validator("lora_targets", mode="before")
    @classmethod
    def _targets_as_text(cls, v):
        return ",".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else v

    @field_validator("freeze_layers", mode="before")
    @classmethod
    def _freeze_as_text(cls, v):
        if isinstance(v, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
            return ",".join(str(x) for x in v)
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _resolve_mask_prompt(self):
        if self.mask_prompt is None:
            self.mask_prompt = self.intermediate_loss.enabled
        return self

    @property
    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]


def _nearest(key: str, model: type[BaseModel]) -> str:
    match = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.0)
    return match[0] if match else ""


def _explain(err: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = IntermediateLoss if loc[0] == "intermediate_loss" and len(loc) > 1 else root or TrainConfig
        return f"{source}: unknown key {key!r}; did you mean {_nearest(loc[-1], model)!r}?"
    return f"{source}: key {key!r}: {first['msg']} (got {first.get('input')!r})"


def build_config(values: dict, source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        raise WorkbenchError(_explain(err, source)) from None


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML config (safe loader), then apply command-line overrides (flags win over the file)."""
    return build_config({**read_yaml(path), **(overrides or {})}, str(path))

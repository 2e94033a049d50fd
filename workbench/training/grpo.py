"""RL with verifiable rewards: GRPO through TRL, LoRA through peft, the guide's RL baseline.

Prompts are the guide's "Calculate: {a} {op} {b} = " over + - * (the arithmetic generator's records), the reward a
``module:function`` (default: the guide's first-integer reward). Before and after training the model is measured
exactly as `workbench train sft` measures it — the lens at the classifier layer on held-out "a op b = " prompts and
the teacher-forced answer metrics — plus greedy answer accuracy, so the training methods compare on one footing.
Each step's reward, KL, completion length and loss go to ``grpo_log.jsonl`` as TRL logs them.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.arithmetic import RL_PROMPT, generate_arithmetic, held_out, rl_prompts
from ..core.data import read_jsonl, read_yaml, write_jsonl
from ..core.errors import WorkbenchError
from ..core.results import check_writable, envelope, write_json
from .config import _explain


class GrpoConfig(BaseModel):
    """`workbench train grpo --config FILE`: every key; an unknown one is an error naming the nearest."""

    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    output: str = "checkpoints/grpo"
    reward: str = "workbench.training.rewards:arithmetic_reward"
    data: str | None = None  # JSONL with prompt and answer; None: generated from the guide's arithmetic (seed, samples)
    eval_data: str | None = None  # held-out "a op b = " records; None: held out from the generator
    samples: int = Field(256, ge=1)
    eval_samples: int = Field(200, ge=1)
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    prompts_per_step: int = Field(4, ge=1)
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(8, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.04, ge=0)  # > 0: KL to the reference (the adapter switched off) is computed and logged
    use_lora: bool = True
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float | None = None
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    seed: int = 42
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # of the base weights; LoRA stays fp32
    device: str = "auto"  # cpu, cuda (auto: cuda when available)
    # what the held-out measurement reads (a task's, from `run compare --task`): the lens's class -> word (None: the
    # four operations) and the answer rule (computed: greedy integer; class_word: the class word at the last position)
    lens_targets: dict[str, str] | None = None
    answer: Literal["computed", "class_word"] = "computed"


def load_grpo_config(path: str | Path | None, overrides: dict | None = None) -> GrpoConfig:
    """The YAML file (read like `train sft`'s) with the given overrides (None: not given) on top."""
    values = read_yaml(path) if path is not None else {}
    try:
        return GrpoConfig.model_validate({**values, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    except ValidationError as err:
        raise WorkbenchError(_explain(err, str(path or "command line"), GrpoConfig)) from None


def load_reward(spec: str) -> Callable:
    """``package.module:function`` -> the function."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise WorkbenchError(
            f"reward {spec!r} is not module:function: e.g. workbench.training.rewards:arithmetic_reward"
        )
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise WorkbenchError(
            f"reward {spec!r} cannot be loaded ({exc}): check the module path and function name"
        ) from None
    if not callable(fn):
        raise WorkbenchError(f"reward {spec!r} is not a function")
    return fn


def rl_records(samples: int, seed: int) -> list[dict]:
    """``samples`` of the guide's RL prompts from its generator (``seed``)."""
    return rl_prompts(generate_arithmetic(samples * 3, seed))[:samples]


def measure(
    cfg: GrpoConfig, spec: str, eval_records: list[dict], adapter: Path | None = None, device: str = "cpu"
) -> dict:
    """The same held-out measurements as `workbench train sft` (lens at the classifier layer, answer metrics), plus
    answer accuracy, as ``cfg`` says to read them."""
    from ..core.models import load_model  # after train_grpo has set HF_HUB_OFFLINE: transformers reads it on import
    from .evaluation import heldout_measurement

    lm = load_model(spec, device=device, adapter=adapter, dtype=cfg.dtype)
    return heldout_measurement(lm, eval_records, classes=cfg.lens_targets, answer=cfg.answer)


def train_grpo(cfg: GrpoConfig, progress: bool = False, before: dict | None = None) -> dict:
    """Train per ``cfg``; writes the adapter, grpo_log.jsonl, config.json and metrics.json to cfg.output. ``before``:
    the base model's measurement on the same held-out prompts when the caller has it (a comparison measures the base
    once for every method and seed); otherwise it is measured here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub (TRL's telemetry)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    reward = load_reward(cfg.reward)
    output = Path(cfg.output)
    check_writable(output / "metrics.json")
    records = read_jsonl(cfg.data, required=("prompt", "answer")) if cfg.data else rl_records(cfg.samples, cfg.seed)
    seen = [{"prompt": r["prompt"].removeprefix(RL_PROMPT.format(prompt=""))} for r in records]  # as "a op b = "
    eval_records = read_jsonl(cfg.eval_data) if cfg.eval_data else held_out(seen, cfg.eval_samples)
    write_jsonl(output / "grpo_prompts.jsonl", records)

    # TRL, datasets and transformers' trainer take seconds to import and look up the hub unless HF_HUB_OFFLINE is set
    # first (above): only a GRPO run pays for them.
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig as TrlConfig
    from trl import GRPOTrainer

    from ..core.devices import resolve_device, resolve_dtype
    from ..core.models import load_hf

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    before = before or measure(cfg, cfg.model, eval_records, device=device)
    torch.manual_seed(cfg.seed)
    model, tokenizer, source = load_hf(cfg.model, dtype)  # never booted into a bridge: HF's cache serves the rollouts
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    log_path = output / "grpo_log.jsonl"
    log_path.unlink(missing_ok=True)

    class LogRows(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
                with log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")

    args = TrlConfig(
        output_dir=str(output / "trl"),
        use_cpu=device == "cpu",
        bf16=dtype is torch.bfloat16 and device != "cpu",
        fp16=dtype is torch.float16,
        generation_kwargs={"use_cache": True},
        activation_checkpointing=False,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        disable_tqdm=not progress,
    )
    peft_config = (
        LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank,
            target_modules=[t.strip() for t in cfg.lora_targets.split(",") if t.strip()],
            task_type="CAUSAL_LM",
        )
        if cfg.use_lora
        else None
    )
    try:
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[LogRows()],
        )
    except ValueError as exc:  # e.g. a LoRA target the model does not have
        raise WorkbenchError(f"cannot set up GRPO: {str(exc).splitlines()[0]}") from None
    if not progress:  # without a progress bar the trainer prints every log dict; grpo_log.jsonl has them
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(output))  # peft's standard adapter files (or the full model without LoRA)
    after = (
        measure(cfg, cfg.model, eval_records, adapter=output, device=device)
        if cfg.use_lora
        else measure(cfg, str(output), eval_records, device=device)
    )
    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    metrics = envelope(
        "train.grpo",
        {
            "model": source.model_id,
            "steps": cfg.max_steps,
            "eval_prompts": len(eval_records),
            "before": before,
            "after": after,
            "train_seconds": seconds,
            "mean_reward_first_last": [log[0].get("reward"), log[-1].get("reward")] if log else None,
            "config": cfg.model_dump(),
        },
    )
    write_json(output / "config.json", cfg.model_dump())
    write_json(output / "metrics.json", metrics)
    return metrics

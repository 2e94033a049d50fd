"""`workbench train sft`, `workbench train grpo` and `workbench estimate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import WorkbenchError
from ._app import (
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    MaxStepsFlag,
    ModelOpt,
    NoProgressOpt,
    SeedFlag,
    TaskOpt,
    TrainModelOpt,
    _int_option,
    _task_records,
    app,
    flag,
    train_app,
)


@train_app.command("sft")
def train_sft_cmd(
    config: ConfigOpt = None,
    model: TrainModelOpt = None,
    data: flag(str, "--data", help="training JSONL") = None,
    eval_data: flag(str, "--eval-data", help="held-out JSONL (default: generated with another seed)") = None,
    output: flag(str, "--output", "-o", help="output folder (adapter, checkpoints, logs, metrics)") = None,
    use_lora: flag(bool, "--use-lora/--no-lora", help="LoRA via peft (default) or full fine-tuning") = None,
    lora_targets: flag(str, "--lora-targets", help="module names, e.g. v_proj,o_proj") = None,
    lora_rank: flag(int, "--lora-rank", min=1) = None,
    lora_alpha: flag(float, "--lora-alpha", help="default 2 * rank") = None,
    freeze_layers: flag(
        str, "--freeze-layers", help="0-12, 0,1,2 or through-classifier: no gradient, no optimizer state"
    ) = None,
    adapter: flag(str, "--adapter", help="continue from a saved adapter folder") = None,
    mask_prompt: flag(bool, "--mask-prompt/--no-mask-prompt", help="loss on response tokens only") = None,
    max_steps: MaxStepsFlag = None,
    epochs: flag(int, "--epochs", min=1) = None,
    batch_size: flag(int, "--batch-size", min=1) = None,
    gradient_accumulation_steps: flag(int, "--gradient-accumulation-steps", min=1) = None,
    learning_rate: flag(float, "--learning-rate", "--lr") = None,
    weight_decay: flag(float, "--weight-decay") = None,
    warmup_steps: flag(int, "--warmup-steps", min=0) = None,
    max_grad_norm: flag(
        float, "--max-grad-norm", help="gradient clipping (default 1.0; 0 = none, as the guide)"
    ) = None,
    seed: SeedFlag = None,
    save_every: flag(int, "--save-every", min=1, help="checkpoint every N steps") = None,
    eval_samples: flag(
        int, "--eval-samples", min=1, help="held-out prompts generated when --eval-data is not given"
    ) = None,
    resume: flag(bool, "--resume/--no-resume", help="continue from the last checkpoint in --output") = None,
    intermediate_layer: flag(
        str, "--intermediate-layer", help="enable the dual-reward loss at this layer (or auto)"
    ) = None,
    intermediate_weight: flag(
        float, "--intermediate-weight", help="weight w of the classifier CE (0.4 in the guide)"
    ) = None,
    dtype: flag(str, "--dtype", help="auto | float32 | bfloat16 | float16 (LoRA weights stay fp32)") = None,
    gradient_checkpointing: flag(
        bool, "--gradient-checkpointing/--no-gradient-checkpointing", help="recompute activations in backward"
    ) = None,
    fsdp: flag(bool, "--fsdp/--no-fsdp", help="shard the model over the ranks (FSDP2; under torchrun)") = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
    task: TaskOpt = None,
):
    """Supervised fine-tuning with LoRA, layer freezing and the optional dual-reward intermediate loss. With --task,
    the lens loss targets the task's class words and, without --data, the task's records are written to
    OUTPUT/data/ and trained on."""
    from ..training.config import TrainConfig, build_config, load_config

    given = {k: v for k, v in locals().items() if k in TrainConfig.model_fields and v is not None}  # flags = YAML keys
    if task is not None:
        given.update(_task_training_inputs(task, config, given))
    if intermediate_layer is not None or intermediate_weight is not None:
        base = given.get("intermediate_loss") or (load_config(config).intermediate_loss.model_dump() if config else {})
        layer_value = (
            intermediate_layer
            if intermediate_layer in (None, "auto")
            else _int_option("--intermediate-layer", intermediate_layer)
        )
        given["intermediate_loss"] = {
            **base,
            "enabled": True,
            **({"layer": layer_value} if layer_value is not None else {}),
            **({"weight": intermediate_weight} if intermediate_weight is not None else {}),
        }
    cfg = load_config(config, given) if config else build_config(given, "command line")
    from ..training.loop import train
    from ..training.records import TrainMetrics

    m = TrainMetrics.from_dict(train(cfg, device=device, progress=not no_progress))
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank trains; rank 0 reports
        return
    before, after = m.before, m.after
    print(f"trained {m.steps} steps; adapter and metrics in {cfg.output}")
    if before:
        print(
            f"correct-operation lens probability at layer {after.lens.layer}: {before.lens.mean_correct_target_prob:.3e} -> "
            f"{after.lens.mean_correct_target_prob:.3f}; top-1 {after.lens.top1_score.correct}/{after.lens.top1_score.total}"
        )
        print(
            f"held-out answer loss {before.answer_loss:.3f} -> {after.answer_loss:.3f}; "
            f"exact match {before.answer_exact_match:.3f} -> {after.answer_exact_match:.3f}"
        )


def _task_training_inputs(task: str, config: Path | None, given: dict) -> dict:
    """The keys --task sets: the lens loss's targets (the class words) and, without --data, the task's records."""
    from ..core.data import write_jsonl
    from ..core.models import load_tokenizer
    from ..tasks.data import check_class_words
    from ..training.config import build_config, load_config

    base = load_config(config, given) if config else build_config(given, "command line")
    spec, data = _task_records(task, 1000, base.eval_samples, base.seed)
    check_class_words(spec, load_tokenizer(base.model))  # two classes read through one token: an error, before training
    out = {"intermediate_loss": {**base.intermediate_loss.model_dump(), "targets": dict(spec.classes)}}
    if "data" not in given:  # the task's records, whatever data file the YAML names
        folder = Path(base.output) / "data"
        out["data"] = str(write_jsonl(folder / "train.jsonl", data.train))
        if "eval_data" not in given:
            out["eval_data"] = str(write_jsonl(folder / "heldout.jsonl", data.heldout))
    return out


@train_app.command("grpo")
def train_grpo_cmd(
    config: ConfigOpt = None,  # keys: workbench.training.grpo.GrpoConfig
    model: TrainModelOpt = None,
    output: flag(str, "--output", help="adapter, grpo_log.jsonl, metrics.json") = None,
    reward: flag(str, "--reward", help="module:function (default workbench.training.rewards:arithmetic_reward)") = None,
    max_steps: MaxStepsFlag = None,
    samples: flag(int, "--samples", help="generated RL prompts") = None,
    seed: SeedFlag = None,
    dtype: flag(str, "--dtype", help="auto | float32 | bfloat16 | float16 (LoRA weights stay fp32)") = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
):
    """RL with verifiable rewards (GRPO through TRL, LoRA through peft) on the guide's "Calculate: a op b = " prompts."""
    from ..training.grpo import load_grpo_config, train_grpo
    from ..training.records import TrainMetrics

    cfg = load_grpo_config(
        config,
        dict(
            model=model,
            output=output,
            reward=reward,
            max_steps=max_steps,
            samples=samples,
            seed=seed,
            dtype=dtype,
            device=device,
        ),
    )
    m = TrainMetrics.from_dict(train_grpo(cfg, progress=not no_progress))
    b, a = m.before, m.after
    print(f"trained {m.steps} GRPO steps; adapter, grpo_log.jsonl and metrics.json in {cfg.output}")
    print(
        f"greedy answers correct {b.greedy_accuracy:.3f} -> {a.greedy_accuracy:.3f}; correct-operation lens "
        f"probability at layer {a.lens.layer}: {b.lens.mean_correct_target_prob:.3e} -> {a.lens.mean_correct_target_prob:.3e}"
    )


@app.command("estimate")
def estimate_cmd(
    model: ModelOpt = "default",
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="sequences per step (per rank)")] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="tokens per sequence")] = 512,
    train: Annotated[bool, typer.Option("--train", help="a training step, not a forward")] = False,
    use_lora: Annotated[bool, typer.Option("--use-lora/--no-lora", help="LoRA (default) or full fine-tuning")] = True,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1)] = 16,
    lora_targets: Annotated[str, typer.Option("--lora-targets")] = "v_proj,o_proj",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    shards: Annotated[int, typer.Option("--shards", min=1, help="FSDP ranks the weights are sharded over")] = 1,
):
    """Memory a forward or a training step needs, from the model's config alone (no weights are read), vs free memory."""
    from ..core import memory
    from ..core.devices import dtype_name, resolve_device, resolve_dtype
    from ..core.models import model_config

    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    config = model_config(model)
    if config is None:
        raise WorkbenchError(
            f"{model!r}: no readable config.json (a .gguf file keeps it in the weights); use a HF folder"
        )
    targets = [t.strip() for t in lora_targets.split(",") if t.strip()]
    lora = memory.lora_parameters(config, targets, lora_rank) if train and use_lora else 0
    est = memory.estimate(
        memory.Shape.of(config),
        torch_dtype,
        batch_size,
        seq_len,
        training=train,
        trainable_params=lora,
        full_finetune=train and not use_lora,
        checkpointing=gradient_checkpointing,
        n_shards=shards,
    )
    free = memory.free_bytes(where)
    gib = memory.GIB
    print(f"{model} in {dtype_name(torch_dtype)}: {est.what}{f', sharded over {shards}' if shards > 1 else ''}")
    print(f"  weights {est.weights / gib:.2f} GiB, trainable {est.trainable / gib:.2f} GiB, ", end="")
    print(
        f"gradients + optimizer {est.gradients_and_optimizer / gib:.2f} GiB, activations {est.activations / gib:.2f} GiB"
    )
    verdict = "fits" if est.total <= free else "does NOT fit"
    print(f"  total {est.total / gib:.2f} GiB; {where} has {free / gib:.1f} GiB free: {verdict}")

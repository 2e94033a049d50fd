"""`workbench train sft`, `workbench train grpo` and `workbench estimate`."""

from __future__ import annotations

import os
from pathlib import Path

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
    TrainDtypeOpt,
    TrainModelOpt,
    _int_option,
    _task_records,
    app,
    flag,
    option,
    train_app,
)
from .formatters import grpo_summary, memory_summary, sft_summary


# The training flags are config keys (TrainConfig, GrpoConfig): each flag's name is typer's default, the parameter's
# with dashes (eval_samples: --eval-samples); a name is written out only for a short form or an alias (-o, --lr).
def _given(flags: dict, config_model) -> dict:
    """The flags given (not None) that are keys of ``config_model``: flags are YAML keys, and override the file's."""
    return {k: v for k, v in flags.items() if k in config_model.model_fields and v is not None}


@train_app.command("sft")
def train_sft_cmd(
    config: ConfigOpt = None,
    model: TrainModelOpt = None,
    data: flag(str, help="training JSONL") = None,
    eval_data: flag(str, help="held-out JSONL (default: generated with another seed)") = None,
    output: flag(str, "--output", "-o", help="output folder (adapter, checkpoints, logs, metrics)") = None,
    use_lora: flag(bool, "--use-lora/--no-lora", help="LoRA via peft (default) or full fine-tuning") = None,
    lora_targets: flag(str, help="module names, e.g. v_proj,o_proj") = None,
    lora_rank: flag(int, min=1) = None,
    lora_alpha: flag(float, help="default 2 * rank") = None,
    freeze_layers: flag(str, help="0-12, 0,1,2 or through-classifier: no gradient, no optimizer state") = None,
    adapter: flag(str, help="continue from a saved adapter folder") = None,
    mask_prompt: flag(bool, help="loss on response tokens only") = None,
    max_steps: MaxStepsFlag = None,
    epochs: flag(int, min=1) = None,
    batch_size: flag(int, min=1) = None,
    gradient_accumulation_steps: flag(int, min=1) = None,
    learning_rate: flag(float, "--learning-rate", "--lr") = None,
    weight_decay: flag(float) = None,
    warmup_steps: flag(int, min=0) = None,
    max_grad_norm: flag(float, help="gradient clipping (default 1.0; 0 = none, as the guide)") = None,
    seed: SeedFlag = None,
    save_every: flag(int, min=1, help="checkpoint every N steps") = None,
    eval_samples: flag(int, min=1, help="held-out prompts generated when --eval-data is not given") = None,
    resume: flag(bool, help="continue from the last checkpoint in --output") = None,
    intermediate_layer: flag(str, help="enable the dual-reward loss at this layer (or auto)") = None,
    intermediate_weight: flag(float, help="weight w of the classifier CE (0.4 in the guide)") = None,
    dtype: TrainDtypeOpt = None,
    gradient_checkpointing: flag(bool, help="recompute activations in backward") = None,
    fsdp: flag(bool, help="shard the model over the ranks (FSDP2; under torchrun)") = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
    task: TaskOpt = None,
):
    """Supervised fine-tuning with LoRA, layer freezing and the optional dual-reward intermediate loss. With --task,
    the lens loss targets the task's class words and, without --data, the task's records are written to
    OUTPUT/data/ and trained on."""
    from ..training.config import TrainConfig, build_config, load_config

    given = _given(locals(), TrainConfig)
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
    print(sft_summary(m, cfg.output))


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
    output: flag(str, help="adapter, grpo_log.jsonl, metrics.json") = None,
    reward: flag(str, help="module:function (default workbench.training.rewards:arithmetic_reward)") = None,
    max_steps: MaxStepsFlag = None,
    samples: flag(int, help="generated RL prompts") = None,
    seed: SeedFlag = None,
    dtype: TrainDtypeOpt = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
):
    """RL with verifiable rewards (GRPO through TRL, LoRA through peft) on the guide's "Calculate: a op b = " prompts."""
    from ..training.grpo import GrpoConfig, load_grpo_config, train_grpo
    from ..training.records import TrainMetrics

    cfg = load_grpo_config(config, _given(locals(), GrpoConfig))
    m = TrainMetrics.from_dict(train_grpo(cfg, progress=not no_progress))
    print(grpo_summary(m, cfg.output))


@app.command("estimate")
def estimate_cmd(
    model: ModelOpt = "default",
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = None,
    batch_size: option(int, "--batch-size", min=1, help="sequences per step (per rank)") = 1,
    seq_len: option(int, "--seq-len", min=1, help="tokens per sequence") = 512,
    train: option(bool, "--train", help="a training step, not a forward") = False,
    use_lora: option(bool, "--use-lora/--no-lora", help="LoRA (default) or full fine-tuning") = True,
    lora_rank: option(int, "--lora-rank", min=1) = 16,
    lora_targets: option(str, "--lora-targets") = "v_proj,o_proj",
    gradient_checkpointing: option(bool, "--gradient-checkpointing") = False,
    shards: option(int, "--shards", min=1, help="FSDP ranks the weights are sharded over") = 1,
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
    print(memory_summary(model, dtype_name(torch_dtype), est, shards, where, memory.free_bytes(where)))

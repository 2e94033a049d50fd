"""LoRA / full SFT with layer freezing and the dual-reward intermediate loss. A plain, visible loop.

Order matters (docs/gotchas.md): peft goes on the HF model first, the bridge is booted over ``peft.get_base_model()``,
adapters are saved and loaded through the peft model. Under ``torchrun`` the same loop runs on every rank; what
differs per rank (the process group, DDP / FSDP2, each rank's slice of the batch, rank 0 writing) is in
distributed.py, docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm

from ..core import memory, models
from ..core.arithmetic import held_out
from ..core.data import read_jsonl
from ..core.devices import dtype_name, resolve_device, resolve_dtype
from ..core.errors import WorkbenchError
from ..core.layers import layer_of
from ..core.lens import resolve_targets
from ..core.models import LoadedModel, attach_adapter, boot_bridge, load_hf
from ..core.results import atomic_write_text, check_writable, envelope, write_json
from .checkpoints import (
    checkpoint_dirs,
    discard,
    load_checkpoint,
    log_lines_up_to,
    remove_leftovers,
    save_checkpoint,
    save_final,
    trainable_parameters,
)
from .config import TrainConfig
from .distributed import Ranks, is_sharded, start, stop, wrap
from .evaluation import answer_metrics, lens_metrics
from .losses import Shares, blank, encode_records, encode_with, sft_batch, sft_step
from .resolve import as_resolved, parse_freeze, resolve_classifier_layer, resolve_layer


def linear_module_names(model: torch.nn.Module) -> list[str]:
    return sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


TRAIN_FIXES = "use --dtype bfloat16, a smaller --batch-size, --gradient-checkpointing, or more GPUs with --fsdp"


def lora_settings(cfg: TrainConfig) -> tuple[int, list[str]]:
    """(rank, target module names) of the LoRA this run trains: the continued adapter's, else the config's."""
    recorded = Path(cfg.adapter or "") / "adapter_config.json"
    if cfg.adapter and recorded.is_file():
        doc = json.loads(recorded.read_text(encoding="utf-8"))
        targets = doc.get("target_modules") or cfg.target_modules
        return int(doc.get("r", cfg.lora_rank)), [targets] if isinstance(targets, str) else list(targets)
    return cfg.lora_rank, cfg.target_modules


def estimated_trainable(cfg: TrainConfig, config, frozen: list[int]) -> int:
    """Trainable parameters before loading: LoRA's r * (in + out) per targeted linear in each unfrozen layer
    (core/memory.py); 0 for full fine-tuning (the estimate counts it itself)."""
    if not (cfg.use_lora or cfg.adapter):
        return 0
    rank, targets = lora_settings(cfg)
    return memory.lora_parameters(config, targets, rank, frozenset(frozen))


def check_training_memory(cfg: TrainConfig, records: list[dict], dtype: torch.dtype, device: str, n_shards: int):
    """Refuse, before the weights load, a training step that does not fit: per-rank batch x the longest encoded
    example, trainable parameters estimated from the config. None when the model's shape is unknown beforehand (a
    GGUF file)."""
    config = models.model_config(cfg.model)
    if config is None or not records:
        return None
    try:
        tokenizer = models.load_tokenizer(cfg.model)
    except Exception:  # load_hf names the problem in full, in one line
        return None
    max_length = int(getattr(config, "max_position_embeddings", 2048))
    seq = max(len(e.ids) for e in encode_with(tokenizer, max_length, records, bool(cfg.mask_prompt)))
    n_layers = int(config.num_hidden_layers)
    frozen = parse_freeze(cfg.freeze_layers, n_layers, resolve_classifier_layer(cfg, n_layers))
    return models.check_memory(
        cfg.model,
        dtype,
        device,
        cfg.batch_size,
        seq,
        TRAIN_FIXES,
        training=True,
        trainable_params=estimated_trainable(cfg, config, frozen),
        full_finetune=not (cfg.use_lora or cfg.adapter),
        checkpointing=cfg.gradient_checkpointing,
        n_shards=n_shards if cfg.fsdp else 1,
    )


def enable_checkpointing(hf_model) -> None:
    """Non-reentrant gradient checkpointing on the HF decoder layers under the bridge (each BlockBridge calls its HF
    layer, which recomputes its forward in backward; the bridge's own hook_resid_post sits outside that)."""
    kwargs = {"use_reentrant": False}
    if hasattr(hf_model, "activation_checkpointing_enable"):  # the name transformers 5.24 prefers
        hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_model(
    cfg: TrainConfig, device: str | None = None, records: list[dict] | None = None, n_shards: int = 1
) -> LoadedModel:
    """HF model -> (peft LoRA or adapter) -> freeze layers -> bridge. Frozen layers' parameters, LoRA included,
    get requires_grad=False (so no gradient and no optimizer state). The base loads in ``cfg.dtype`` (LoRA stays fp32);
    with ``records`` the memory a training step needs is checked first."""
    device = resolve_device(device)
    dtype = resolve_dtype(cfg.dtype, device)
    estimate = check_training_memory(cfg, records, dtype, device, n_shards) if records else None
    hf_model, tokenizer, source = load_hf(cfg.model, dtype)
    n_layers = hf_model.config.num_hidden_layers
    classifier = resolve_classifier_layer(cfg, n_layers)
    frozen = parse_freeze(cfg.freeze_layers, n_layers, classifier)
    peft_model = None
    if cfg.adapter:
        peft_model = attach_adapter(hf_model, cfg.adapter, trainable=True)
    elif cfg.use_lora:
        valid = linear_module_names(hf_model)
        unknown = [t for t in cfg.target_modules if t not in valid]
        if unknown or not cfg.target_modules:
            raise WorkbenchError(
                f"--lora-targets {cfg.lora_targets!r}: {unknown or 'none given'} not in this model; valid: {','.join(valid)}"
            )
        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.target_modules,
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(hf_model, lora)
    base = peft_model.get_base_model() if peft_model is not None else hf_model
    for name, param in base.named_parameters():
        if layer_of(name) in frozen:
            param.requires_grad_(False)
    bridge = boot_bridge(base, tokenizer, source.model_id, device, dtype)
    base.to(device)
    if cfg.gradient_checkpointing:
        enable_checkpointing(base)
    lm = LoadedModel(base, tokenizer, bridge, source, device, peft_model, cfg.adapter)
    lora_dtypes = {p.dtype for n, p in base.named_parameters() if "lora_" in n}
    lm.info.update(
        frozen_layers=frozen,
        classifier_layer=classifier,
        dtype=dtype_name(dtype),
        lora_dtype=dtype_name(lora_dtypes.pop()) if len(lora_dtypes) == 1 else None,
        memory_estimate=estimate.to_dict() if estimate is not None else None,
    )
    return lm


def micro_batch_indices(n: int, batch_size: int, seed: int, index: int) -> np.ndarray:
    """The ``index``-th micro-batch of the seeded data order (a fresh permutation each epoch): resumable by step."""
    per_epoch = math.ceil(n / batch_size)
    epoch, j = divmod(index, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[j * batch_size : (j + 1) * batch_size]


def total_steps(cfg: TrainConfig, n: int, world_size: int = 1) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return cfg.epochs * math.ceil(math.ceil(n / (cfg.batch_size * world_size)) / cfg.gradient_accumulation_steps)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then linear decay to zero (the HF Trainer's default schedule)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# ---------------------------------------------------------------- the loop


def evaluate(
    lm: LoadedModel, eval_records: list[dict], cfg: TrainConfig, layer: int, ranks: Ranks | None = None
) -> dict:
    lm.bridge.eval()
    with (ranks or Ranks()).whole(lm.bridge), torch.inference_mode():
        return {
            "lens": lens_metrics(lm, eval_records, cfg.intermediate_loss.targets, layer),
            **answer_metrics(lm, eval_records),
        }


def train(cfg: TrainConfig, device: str | None = None, progress: bool = True) -> dict:
    """Train per ``cfg``; writes the adapter, checkpoints, train_log.jsonl, config.json and metrics.json to cfg.output.
    Under ``torchrun`` every rank runs this (distributed.py); rank 0 writes."""
    ranks, device = start(cfg.fsdp, resolve_device(device))
    try:
        with ranks.stop_together(cfg.output):
            return _train(cfg, device, progress, ranks)
    finally:
        stop(ranks)


def _train(cfg: TrainConfig, device: str, progress: bool, ranks: Ranks) -> dict:
    output = Path(cfg.output)
    records = read_jsonl(cfg.data)
    eval_records = read_jsonl(cfg.eval_data) if cfg.eval_data else held_out(records, cfg.eval_samples)
    check_writable(output / "metrics.json")
    torch.manual_seed(cfg.seed)  # the same on every rank: the same LoRA initialisation everywhere
    lm = prepare_model(cfg, device, records, ranks.world_size)
    layer = resolve_layer(cfg, lm.n_layers)
    eval_layer = lm.info["classifier_layer"]
    target_ids = {
        op: t.token_id
        for op, t in zip(
            cfg.intermediate_loss.targets, resolve_targets(lm, list(cfg.intermediate_loss.targets.values()))
        )
    }
    examples = encode_records(lm, records, cfg.mask_prompt, target_ids=target_ids)
    steps = total_steps(cfg, len(examples), ranks.world_size)
    half = lm.dtype if lm.dtype != torch.float32 else None
    model = wrap(lm.bridge, ranks, device, mixed_dtype=half)  # the bridge itself for one process
    params = trainable_parameters(lm)  # after wrapping: FSDP2 replaces the parameters with its shards
    if not params:
        raise WorkbenchError("nothing to train: every parameter is frozen; shrink --freeze-layers")
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, steps))
    fingerprint = cfg.model_dump(exclude={"max_steps", "save_every", "resume", "output", "epochs"})
    if ranks.active:  # the global batch, hence the data order, depends on it
        fingerprint["world_size"] = ranks.world_size

    start = 0
    log_path = output / "train_log.jsonl"
    if ranks.main:
        remove_leftovers(output)
    ranks.barrier()
    checkpoints = checkpoint_dirs(output)
    if cfg.resume and checkpoints:
        start = load_checkpoint(lm, optimizer, scheduler, checkpoints[-1], fingerprint)
        if start > steps:
            raise WorkbenchError(
                f"--resume: the last checkpoint is step {start}, beyond this run's {steps} steps: "
                "raise --max-steps or use a new --output"
            )
        if ranks.main:
            atomic_write_text(log_path, "".join(line + "\n" for line in log_lines_up_to(log_path, start)))
    elif ranks.main:  # a fresh run: checkpoints of an earlier run in this folder must never be resumed into this one
        log_path.unlink(missing_ok=True)
        for old in checkpoints:
            discard(old)
    before_path = output / "metrics_before.json"  # kept so a resumed run still reports where it started
    if start > 0 and before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = evaluate(lm, eval_records, cfg, eval_layer, ranks)  # on every rank: FSDP2's forward needs them all
        if ranks.main:
            atomic_write_text(before_path, json.dumps(before, indent=2) + "\n")
    resolved = {
        **as_resolved(cfg, layer, lm.info["frozen_layers"], lm.info["dtype"]),
        "intermediate_loss_layer": layer,
        "eval_layer": eval_layer,
        "total_steps": steps,
        "frozen_layers": lm.info["frozen_layers"],
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "target_token_ids": target_ids,
        "tokenization": lm.describe()["tokenization"],
        "model_id": lm.model_id,
        "lora_dtype": lm.info["lora_dtype"],
        "world_size": ranks.world_size,
        "global_batch_size": cfg.batch_size * ranks.world_size,
        "memory_estimate": lm.info["memory_estimate"],
    }
    if ranks.main:
        atomic_write_text(output / "config.json", json.dumps(resolved, indent=2) + "\n")

    bar = tqdm(total=steps, initial=start, disable=not progress or not ranks.main, desc="train", unit="step")
    pad = lm.tokenizer.pad_token_id or 0
    weight = cfg.intermediate_loss.weight if layer is not None else 0.0
    accumulation = cfg.gradient_accumulation_steps
    with log_path.open("a", encoding="utf-8") if ranks.main else nullcontext() as log:
        for step in range(start, steps):
            t0 = time.perf_counter()
            lm.bridge.train()
            totals: dict[str, float] = {}
            for micro in range(accumulation):
                # the global micro-batch of the seeded order; each rank trains its slice of it
                idx = micro_batch_indices(
                    len(examples), cfg.batch_size * ranks.world_size, cfg.seed, step * accumulation + micro
                )
                mine = [examples[i] for i in ranks.my_slice(idx)] or [blank(examples[idx[0]])]
                shares = Shares.of([examples[i] for i in idx], ranks.world_size) if ranks.active else None
                batch = sft_batch(mine, pad, lm.device)
                with ranks.accumulating(model, last=micro == accumulation - 1):
                    losses = sft_step(lm, batch, layer, weight, accumulation, model, shares)
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + v
            totals = ranks.global_mean(totals)
            grad_norm = torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm or float("inf"))
            if is_sharded(grad_norm):
                grad_norm = grad_norm.full_tensor()
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            row = {
                "step": step + 1,
                **totals,
                "grad_norm": float(grad_norm),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            if log is not None:
                log.write(json.dumps(row) + "\n")
                log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss']:.3f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < steps:
                save_checkpoint(lm, optimizer, scheduler, step + 1, output, fingerprint, ranks=ranks)
    bar.close()
    save_final(lm, output, ranks)
    after = evaluate(lm, eval_records, cfg, eval_layer, ranks)
    metrics = envelope(
        "train.sft",
        {
            "model": lm.model_id,
            "layer": eval_layer,
            "steps": steps,
            "eval_prompts": len(eval_records),
            "before": before,
            "after": after,
            "config": resolved,
        },
    )
    if ranks.main:
        write_json(output / "metrics.json", metrics)
    ranks.barrier()
    return metrics

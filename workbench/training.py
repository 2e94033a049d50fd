"""LoRA / full SFT with layer freezing and the dual-reward intermediate loss. A plain, visible loop.

Order matters (DESIGN.md): peft goes on the HF model first, the bridge is booted over ``peft.get_base_model()``,
adapters are saved and loaded through the peft model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import TrainConfig
from .data import held_out, read_jsonl
from .errors import WorkbenchError
from .evaluation import answer_metrics, lens_metrics
from .lens import resolve_targets
from .models import LoadedModel, boot_bridge, attach_adapter, default_device, layer_of, load_hf
from .results import atomic_write_text, check_writable, environment
from .sft import encode_records, sft_batch, sft_losses
from .tasks import parse_layers

def linear_module_names(model: torch.nn.Module) -> list[str]:
    return sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def parse_freeze(spec: str | None, n_layers: int) -> list[int]:
    if spec is None or not str(spec).strip():
        return []
    try:
        return parse_layers(str(spec), n_layers)
    except WorkbenchError as exc:
        raise WorkbenchError(f"--freeze-layers: {exc}") from None


def prepare_model(cfg: TrainConfig, device: str | None = None) -> LoadedModel:
    """HF model -> (peft LoRA or adapter) -> freeze layers -> bridge. Frozen layers' parameters, LoRA included,
    get requires_grad=False (so no gradient and no optimizer state)."""
    device = device or default_device()
    hf_model, tokenizer, source = load_hf(cfg.model)
    n_layers = hf_model.config.num_hidden_layers
    frozen = parse_freeze(cfg.freeze_layers, n_layers)
    peft_model = None
    if cfg.adapter:
        peft_model = attach_adapter(hf_model, cfg.adapter, trainable=True)
    elif cfg.use_lora:
        from peft import LoraConfig, get_peft_model

        valid = linear_module_names(hf_model)
        unknown = [t for t in cfg.target_modules if t not in valid]
        if unknown or not cfg.target_modules:
            raise WorkbenchError(f"--lora-targets {cfg.lora_targets!r}: {unknown or 'none given'} not in this model; valid: {','.join(valid)}")
        lora = LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank, lora_dropout=cfg.lora_dropout,
            target_modules=cfg.target_modules, task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(hf_model, lora)
    base = peft_model.get_base_model() if peft_model is not None else hf_model
    for name, param in base.named_parameters():
        if layer_of(name) in frozen:
            param.requires_grad_(False)
    bridge = boot_bridge(base, tokenizer, source.model_id, device)
    base.to(device)
    lm = LoadedModel(base, tokenizer, bridge, source, device, peft_model, cfg.adapter)
    lm.info["frozen_layers"] = frozen
    return lm


def trainable_parameters(lm: LoadedModel) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in lm.hf_model.named_parameters() if p.requires_grad}


def micro_batch_indices(n: int, batch_size: int, seed: int, index: int) -> np.ndarray:
    """The ``index``-th micro-batch of the seeded data order (a fresh permutation each epoch): resumable by step."""
    per_epoch = math.ceil(n / batch_size)
    epoch, j = divmod(index, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[j * batch_size : (j + 1) * batch_size]


def total_steps(cfg: TrainConfig, n: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return cfg.epochs * math.ceil(math.ceil(n / cfg.batch_size) / cfg.gradient_accumulation_steps)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then linear decay to zero (the HF Trainer's default schedule)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def resolve_layer(cfg: TrainConfig, n_layers: int) -> int | None:
    il = cfg.intermediate_loss
    if not il.enabled:
        return None
    layer = int(0.55 * n_layers) if il.layer == "auto" else il.layer
    if not 0 <= layer < n_layers:
        raise WorkbenchError(f"intermediate_loss.layer {layer} is out of range: this model has layers 0-{n_layers - 1}")
    return layer


# ---------------------------------------------------------------- checkpoints (atomic: temp dir + rename)

def _checkpoint_dirs(output: Path) -> list[Path]:
    root = output / "checkpoints"
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def save_checkpoint(lm: LoadedModel, optimizer, scheduler, step: int, output: Path, fingerprint: dict, keep: int = 2) -> Path:
    root = output / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=root))
    save_file({n: p.detach().cpu().contiguous() for n, p in trainable_parameters(lm).items()}, tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    final = root / f"step-{step:06d}"
    if final.exists():
        _discard(final)
    tmp.rename(final)
    for old in _checkpoint_dirs(output)[:-keep]:
        _discard(old)
    return final


def _discard(folder: Path) -> None:
    """Rename out of the way first (atomic), then delete: a kill mid-delete leaves a .tmp- folder, never a half step."""
    doomed = folder.with_name(f".tmp-old-{folder.name}-{os.getpid()}")
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_leftovers(output: Path) -> None:
    """Temp folders of a save that a kill interrupted (never read: a checkpoint only counts once renamed)."""
    for tmp in [*output.glob(".tmp-final-*"), *(output / "checkpoints").glob(".tmp-*")]:
        shutil.rmtree(tmp, ignore_errors=True)


def _log_lines_up_to(log_path: Path, step: int) -> list[str]:
    """The train_log lines of steps 1..step; a line torn by a kill mid-write is dropped."""
    if not log_path.exists():
        return []
    kept = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    return kept


def load_checkpoint(lm: LoadedModel, optimizer, scheduler, path: Path, fingerprint: dict) -> int:
    state = json.loads((path / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        diff = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
        raise WorkbenchError(f"--resume: checkpoint {path} was made with other settings ({', '.join(diff)}): use the same config or a new --output")
    params = trainable_parameters(lm)
    saved = load_file(path / "trainable.safetensors")
    if set(saved) != set(params):
        raise WorkbenchError(f"--resume: checkpoint {path} holds other trainable parameters: use a new --output")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    extra = torch.load(path / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    return int(state["step"])


def save_adapter(peft_model, folder: Path) -> None:
    """peft's standard adapter files, with the keys peft expects. The bridge wraps the HF modules in place, so a
    plain ``save_pretrained`` after booting would write ``._original_component.`` into every key, and peft would
    then load nothing (it only warns)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    clean = {k.replace("._original_component", ""): v.detach().cpu().contiguous() for k, v in state.items()}
    peft_model.peft_config["default"].save_pretrained(str(folder))
    save_file(clean, folder / "adapter_model.safetensors", metadata={"format": "pt"})


def save_final(lm: LoadedModel, output: Path) -> None:
    """The adapter in peft's standard format (adapter_config.json + adapter_model.safetensors), or the full model."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=output))
    if lm.peft_model is not None:
        save_adapter(lm.peft_model, tmp)
    else:
        lm.hf_model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
    for f in tmp.iterdir():
        f.replace(output / f.name)
    tmp.rmdir()


# ---------------------------------------------------------------- the loop

def evaluate(lm: LoadedModel, eval_records: list[dict], cfg: TrainConfig, layer: int) -> dict:
    lm.bridge.eval()
    with torch.inference_mode():
        return {"lens": lens_metrics(lm, eval_records, cfg.intermediate_loss.targets, layer),
                **answer_metrics(lm, eval_records)}


def train(cfg: TrainConfig, device: str | None = None, progress: bool = True) -> dict:
    """Train per ``cfg``; writes the adapter, checkpoints, train_log.jsonl, config.json and metrics.json to cfg.output."""
    output = Path(cfg.output)
    records = read_jsonl(cfg.data)
    eval_records = read_jsonl(cfg.eval_data) if cfg.eval_data else held_out(records, cfg.eval_samples)
    check_writable(output / "metrics.json")
    torch.manual_seed(cfg.seed)
    lm = prepare_model(cfg, device)
    layer = resolve_layer(cfg, lm.n_layers)
    eval_layer = layer if layer is not None else lm.classifier_layer
    target_ids = {op: t.token_id for op, t in zip(cfg.intermediate_loss.targets, resolve_targets(lm, list(cfg.intermediate_loss.targets.values())))}
    examples = encode_records(lm, records, cfg.mask_prompt, target_ids=target_ids)
    steps = total_steps(cfg, len(examples))
    params = trainable_parameters(lm)
    if not params:
        raise WorkbenchError("nothing to train: every parameter is frozen; shrink --freeze-layers")
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, steps))
    fingerprint = cfg.model_dump(exclude={"max_steps", "save_every", "resume", "output", "epochs"})

    start = 0
    log_path = output / "train_log.jsonl"
    _remove_leftovers(output)
    checkpoints = _checkpoint_dirs(output)
    if cfg.resume and checkpoints:
        start = load_checkpoint(lm, optimizer, scheduler, checkpoints[-1], fingerprint)
        if start > steps:
            raise WorkbenchError(f"--resume: the last checkpoint is step {start}, beyond this run's {steps} steps: "
                                 "raise --max-steps or use a new --output")
        atomic_write_text(log_path, "".join(line + "\n" for line in _log_lines_up_to(log_path, start)))
    else:  # a fresh run: checkpoints of an earlier run in this folder must never be resumed into this one
        log_path.unlink(missing_ok=True)
        for old in checkpoints:
            _discard(old)
    before_path = output / "metrics_before.json"  # kept so a resumed run still reports where it started
    if start > 0 and before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = evaluate(lm, eval_records, cfg, eval_layer)
        atomic_write_text(before_path, json.dumps(before, indent=2) + "\n")
    resolved = {**cfg.model_dump(), "intermediate_loss_layer": layer, "eval_layer": eval_layer, "total_steps": steps,
                "frozen_layers": lm.info["frozen_layers"], "trainable_parameters": sum(p.numel() for p in params.values()),
                "target_token_ids": target_ids, "tokenization": lm.describe()["tokenization"], "model_id": lm.model_id}
    atomic_write_text(output / "config.json", json.dumps(resolved, indent=2) + "\n")

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", unit="step")
    pad = lm.tokenizer.pad_token_id or 0
    weight = cfg.intermediate_loss.weight if layer is not None else 0.0
    with log_path.open("a", encoding="utf-8") as log:
        for step in range(start, steps):
            t0 = time.perf_counter()
            lm.bridge.train()
            totals: dict[str, float] = {}
            for micro in range(cfg.gradient_accumulation_steps):
                idx = micro_batch_indices(len(examples), cfg.batch_size, cfg.seed, step * cfg.gradient_accumulation_steps + micro)
                batch = sft_batch([examples[i] for i in idx], pad, lm.device)
                losses = sft_losses(lm, batch, layer, weight)
                (losses["loss"] / cfg.gradient_accumulation_steps).backward()
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + v.item() / cfg.gradient_accumulation_steps
            grad_norm = torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm or float("inf"))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            row = {"step": step + 1, **totals, "grad_norm": float(grad_norm), "lr": lr, "seconds": time.perf_counter() - t0}
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss']:.3f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < steps:
                save_checkpoint(lm, optimizer, scheduler, step + 1, output, fingerprint)
    bar.close()
    save_final(lm, output)
    after = evaluate(lm, eval_records, cfg, eval_layer)
    metrics = {"schema_version": 1, "kind": "train.sft", "model": lm.model_id, "layer": eval_layer, "steps": steps,
               "eval_prompts": len(eval_records), "before": before, "after": after, "config": resolved, "environment": environment()}
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics

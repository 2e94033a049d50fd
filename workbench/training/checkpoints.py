"""Checkpoints and the final adapter, written atomically (temp folder + rename): a kill never leaves half a step.

Under several ranks every rank calls these (FSDP2 gathers each shard into a whole tensor, a collective), rank 0 alone
writes, and all wait for it at a barrier; on ``--resume`` every rank reads the same checkpoint and keeps its shard.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ..core.errors import WorkbenchError
from ..core.models import LoadedModel
from .distributed import Ranks, full, is_sharded, shard_like

ALONE = Ranks()


def trainable_parameters(lm: LoadedModel) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in lm.hf_model.named_parameters() if p.requires_grad}


def checkpoint_dirs(output: Path) -> list[Path]:
    root = output / "checkpoints"
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def save_checkpoint(
    lm: LoadedModel,
    optimizer,
    scheduler,
    step: int,
    output: Path,
    fingerprint: dict,
    keep: int = 2,
    ranks: Ranks = ALONE,
) -> Path:
    root = output / "checkpoints"
    final = root / f"step-{step:06d}"
    weights = {n: full(p).contiguous() for n, p in trainable_parameters(lm).items()}
    state = optimizer.state_dict()
    state["state"] = {
        i: {k: full(v) if isinstance(v, torch.Tensor) else v for k, v in sorted(st.items())}
        for i, st in sorted(state["state"].items())
    }
    if ranks.main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=root))
        save_file(weights, tmp / "trainable.safetensors")
        torch.save(
            {"optimizer": state, "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
            tmp / "optimizer.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
        if final.exists():
            discard(final)
        tmp.rename(final)
        for old in checkpoint_dirs(output)[:-keep]:
            discard(old)
    ranks.barrier()
    return final


def discard(folder: Path) -> None:
    """Rename out of the way first (atomic), then delete: a kill mid-delete leaves a .tmp- folder, never a half step."""
    doomed = folder.with_name(f".tmp-old-{folder.name}-{os.getpid()}")
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_leftovers(output: Path) -> None:
    """Temp folders of a save that a kill interrupted (never read: a checkpoint only counts once renamed)."""
    for tmp in [*output.glob(".tmp-final-*"), *(output / "checkpoints").glob(".tmp-*")]:
        shutil.rmtree(tmp, ignore_errors=True)


def log_lines_up_to(log_path: Path, step: int) -> list[str]:
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
    """Every rank reads the same checkpoint; under FSDP2 each keeps its shard of the weights and the AdamW state."""
    state = json.loads((path / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        diff = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
        raise WorkbenchError(
            f"--resume: checkpoint {path} was made with other settings ({', '.join(diff)}): use the same config or a new --output"
        )
    params = trainable_parameters(lm)
    saved = load_file(path / "trainable.safetensors")
    if set(saved) != set(params):
        raise WorkbenchError(f"--resume: checkpoint {path} holds other trainable parameters: use a new --output")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(shard_like(saved[n], p))
    extra = torch.load(path / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    for p in params.values():  # AdamW's moments saved whole: this rank's shard of each
        if is_sharded(p):
            st = optimizer.state.get(p, {})
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(p.shape):
                    st[k] = shard_like(v, p)
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    return int(state["step"])


def save_adapter(peft_model, folder: Path | None) -> None:
    """peft's standard adapter files, with the keys peft expects. The bridge wraps the HF modules in place, so a
    plain ``save_pretrained`` after booting would write ``._original_component.`` into every key, and peft would
    then load nothing (it only warns). ``folder=None``: a rank other than 0, which only takes part in gathering."""
    state = get_peft_model_state_dict(peft_model)
    clean = {k.replace("._original_component", ""): full(v).contiguous() for k, v in state.items()}
    if folder is None:
        return
    peft_model.peft_config["default"].save_pretrained(str(folder))
    save_file(clean, folder / "adapter_model.safetensors", metadata={"format": "pt"})


def save_final(lm: LoadedModel, output: Path, ranks: Ranks = ALONE) -> None:
    """The adapter in peft's standard format (adapter_config.json + adapter_model.safetensors), or the full model."""
    sharded = any(is_sharded(p) for p in lm.hf_model.parameters())
    whole = {k: full(v) for k, v in lm.hf_model.state_dict().items()} if sharded and lm.peft_model is None else None
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=output)) if ranks.main else None
    if lm.peft_model is not None:
        save_adapter(lm.peft_model, tmp)
    elif tmp is not None:
        lm.hf_model.save_pretrained(tmp, **({"state_dict": whole} if whole is not None else {}))
        lm.tokenizer.save_pretrained(tmp)
    if tmp is not None:
        for f in tmp.iterdir():
            f.replace(output / f.name)
        tmp.rmdir()
    ranks.barrier()

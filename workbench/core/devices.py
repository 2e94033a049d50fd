"""Where a model runs and in which precision: ``--device`` and ``--dtype`` resolved and checked, one line each.

``auto`` device: CUDA when there is one, else the CPU. ``auto`` dtype: bfloat16 on a CUDA GPU that supports it,
float32 otherwise (the CPU, older GPUs). float16 on the CPU is refused: several CPU kernels lack it and the ones
that exist are slower than float32 there.
"""

from __future__ import annotations

import torch

from .errors import WorkbenchError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


def resolve_device(device: str | None) -> str:
    """``None``/``auto`` -> cuda when available else cpu; an unknown or absent device is one line."""
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise WorkbenchError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or auto") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA GPU visible"
            raise WorkbenchError(f"--device {device}: this machine has {build}; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise WorkbenchError(f"--device {device}: only {count} CUDA device(s) here (cuda:0-{count - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise WorkbenchError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise WorkbenchError(f"--device {device!r}: only cpu, cuda[:N] and mps are supported here")
    return device


def resolve_dtype(name: str | torch.dtype | None, device: str) -> torch.dtype:
    """The torch dtype for ``--dtype`` on ``device`` (already resolved); one that device cannot run is one line."""
    if isinstance(name, torch.dtype):
        name = dtype_name(name)
    name = ALIASES.get(str(name or "auto"), str(name or "auto"))
    kind = torch.device(device).type
    if name == "auto":
        return torch.bfloat16 if kind == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise WorkbenchError(f"--dtype {name!r} is not a dtype: use one of {', '.join(DTYPE_CHOICES)}")
    if kind == "cpu" and name == "float16":
        raise WorkbenchError(
            "--dtype float16 on the CPU: float16 kernels are missing or slow there; use --dtype float32"
        )
    if kind == "cuda" and name == "bfloat16" and not torch.cuda.is_bf16_supported():
        gpu = torch.cuda.get_device_name(torch.device(device))
        raise WorkbenchError(f"--dtype bfloat16: {gpu} has no bfloat16 support; use --dtype float16 or float32")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

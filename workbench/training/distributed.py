"""Ranks: one training process per device under ``torchrun`` (env RANK, WORLD_SIZE, LOCAL_RANK), or one process alone.

What a rank does differently from a lone process, and only that, lives here: the process group (gloo on the CPU, nccl
on CUDA, with a timeout so that a rank that dies or hangs stops the others with one line instead of a hang), the
wrapping of the module whose forward is called (``DDP(bridge)``: wrapping the peft model instead raises nothing and
syncs nothing, docs/distributed.md), FSDP2 sharding (``fully_shard`` on every ``bridge.blocks[i]``, then the bridge),
each rank's slice of the global micro-batch, global means of the logged losses, and full tensors out of FSDP2's
shards for saving. A lone process gets ``Ranks()`` (world size 1), whose methods do nothing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import WorkbenchError

TIMEOUT_ENV = "WORKBENCH_DIST_TIMEOUT"  # seconds a collective waits for the other ranks before the run stops
DEFAULT_TIMEOUT_S = 600.0


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun (or accelerate launch, or any env:// launcher) sets it; 1 when not launched so."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise WorkbenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number: launch with torchrun") from None


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise WorkbenchError(f"{TIMEOUT_ENV}={raw!r}: give the collective timeout in seconds (> 0)")
    return value


@dataclass
class Ranks:
    """This process's place among the ranks (a lone process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    fsdp: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def kind(self) -> str:
        return "fsdp2" if self.fsdp else "ddp" if self.active else "none"

    # ------------------------------------------------------------ the data: each rank its slice of the global batch

    def my_slice(self, global_indices: np.ndarray) -> np.ndarray:
        """This rank's part of a global micro-batch (contiguous, sizes differing by at most one); may be empty."""
        return np.array_split(global_indices, self.world_size)[self.rank] if self.active else global_indices

    # ------------------------------------------------------------ collectives (no-ops for a lone process)

    def global_mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (each rank's value already being its share of the global mean, this is
        the global mean itself)."""
        if not self.active:
            return values
        keys = list(values)  # the same order on every rank: the same losses in the same order
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @property
    def collective_device(self) -> str:
        return f"cuda:{self.local_rank}" if dist.is_initialized() and dist.get_backend() == "nccl" else "cpu"

    def accumulating(self, model: torch.nn.Module, last: bool):
        """Skip the gradient all-reduce on micro-batches before the last of a step (the result is the same either way:
        fewer messages)."""
        if last or not self.active:
            return nullcontext()
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return model.no_sync()
        return _fsdp_no_sync(model)

    @contextmanager
    def whole(self, bridge: torch.nn.Module):
        """The FSDP2 root's own parameters (embedding, final norm, unembedding) gathered for the duration: the analysis
        code calls ``bridge.run_with_hooks``, which calls ``forward`` directly and so skips FSDP2's pre-forward hook
        (the blocks, called through ``__call__`` inside, gather their own). Nothing to do without FSDP2."""
        unshard = getattr(bridge, "unshard", None) if self.fsdp else None
        if unshard is None:
            yield
            return
        unshard()
        try:
            yield
        finally:
            bridge.reshard()

    @contextmanager
    def stop_together(self, output):
        """Turn a failed collective (another rank died, or hung past the timeout) into one line on this rank."""
        try:
            yield
        except WorkbenchError:
            raise
        except (RuntimeError, ConnectionError) as exc:
            if not self.active or not _is_collective_error(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise WorkbenchError(
                f"rank {self.rank} of {self.world_size}: a collective failed, another rank died or stalled past "
                f"{timeout_s():.0f} s ({TIMEOUT_ENV}) ({type(exc).__name__}: {first}); the run stopped: fix the cause "
                f"and rerun the same command with --resume to continue from the last checkpoint in {output}"
            ) from None


def _is_collective_error(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    words = ("gloo", "nccl", "connection", "peer", "timed out", "timeout", "socket", "broken pipe", "collective")
    return any(w in text for w in words)


@contextmanager
def _fsdp_no_sync(model):
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is None:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)


# ---------------------------------------------------------------- starting and stopping


def start(fsdp: bool, device: str) -> tuple[Ranks, str]:
    """Join the process group when launched with several ranks (else nothing), and the device this rank trains on
    (``cuda`` becomes ``cuda:LOCAL_RANK``). ``--fsdp`` without several ranks is one line."""
    world = launched_world_size()
    if world <= 1:
        if fsdp:
            raise WorkbenchError(
                "--fsdp shards the model over the ranks of a distributed launch, and this is one process: run "
                "`torchrun --nproc_per_node N -m workbench.cli train sft ... --fsdp` with N >= 2, or drop --fsdp"
            )
        return Ranks(), device
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    kind = torch.device(device).type
    if kind == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    elif kind != "cpu":
        raise WorkbenchError(f"--device {device}: distributed training runs on CUDA (nccl) or the CPU (gloo) only")
    if not dist.is_initialized():
        backend = "nccl" if kind == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        except (RuntimeError, ValueError, ConnectionError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise WorkbenchError(
                f"rank {rank}: cannot join the {backend} process group of {world} ranks ({first}): launch with "
                "`torchrun --nproc_per_node N ...` (it sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)"
            ) from None
    elif dist.get_world_size() != world:
        raise WorkbenchError(f"the process group has {dist.get_world_size()} ranks but WORLD_SIZE is {world}")
    return Ranks(rank, world, local_rank, fsdp), device


def stop(ranks: Ranks) -> None:
    """Leave the process group (when this module joined it)."""
    if ranks.active and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------- wrapping the model


def wrap(bridge: torch.nn.Module, ranks: Ranks, device: str, mixed_dtype: torch.dtype | None = None):
    """The module to call forward on. A lone process: the bridge itself. DDP: ``DDP(bridge)`` (the bridge's forward
    is what runs, so the bridge is what DDP must wrap). FSDP2: ``fully_shard`` on each of the bridge's blocks, then on
    the bridge (the embedding, final norm and unembedding), in place: the bridge itself is then the module to call,
    and its parameters (the peft model's too: the same objects) become DTensor shards. ``mixed_dtype``: the base
    weights' dtype when it is not fp32, so that FSDP2 gathers fp32 LoRA and a bf16 base as one dtype (LoRA computes
    in it, gradients reduce in fp32)."""
    if not ranks.active:
        return bridge
    if not ranks.fsdp:
        ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(bridge, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(torch.device(device).type, (ranks.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=mixed_dtype, reduce_dtype=torch.float32) if mixed_dtype else None
    kwargs = {"mesh": mesh, **({"mp_policy": policy} if policy else {})}
    for block in bridge.blocks:
        fully_shard(block, **kwargs)
    fully_shard(bridge, **kwargs)
    # FSDP2 sets itself up at the first call through the root; an analysis forward (run_with_hooks calls
    # ``forward`` directly) coming first would set each block up as a root of its own. So call the root once now.
    with torch.no_grad():
        bridge(torch.zeros((1, 1), dtype=torch.long, device=device))
    return bridge


# ---------------------------------------------------------------- full tensors out of FSDP2 shards, and back


def is_sharded(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor shard (a collective: every rank must call it, in the same order), detached, on
    the CPU; a plain tensor as it is, detached, on the CPU."""
    t = t.detach()
    return (t.full_tensor() if is_sharded(t) else t).cpu()


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor that every rank holds) laid out as ``like``: this rank's shard when ``like`` is a
    DTensor (no communication), else ``value`` on ``like``'s device and dtype."""
    from torch.distributed.tensor import distribute_tensor

    if is_sharded(like):
        return distribute_tensor(
            value.to(like.device_mesh.device_type).to(like.dtype), like.device_mesh, like.placements, src_data_rank=None
        )
    return value.to(like.device, like.dtype)

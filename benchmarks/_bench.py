"""Shared helpers for the benchmark scripts (not a benchmark itself).

Every benchmark measures its contenders side by side in one process, interleaving repetitions (the order of
the contenders alternates each round, A B / B A / ..., so drift and "who ran first" cancel), and reports
medians. Nothing here asserts on wall-clock time; ``--check`` only turns a missed ratio target into exit 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date

# The same environment the CLI sets for itself; set before anything imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def parser(description: str, reps: int, quick_reps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=f"fewer repetitions ({quick_reps} instead of {reps})")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per contender (overrides --quick)")
    p.add_argument("--check", action="store_true", help="exit 1 when a ratio misses its target")
    p.add_argument("--device", default=None, help="cpu | cuda (default: the workbench default)")
    p.set_defaults(_reps=reps, _quick_reps=quick_reps)
    return p


def n_reps(args) -> int:
    if args.reps is not None:
        return max(1, args.reps)
    return args._quick_reps if args.quick else args._reps


def arithmetic_prompts(n: int, seed: int = 42) -> list[str]:
    """``"a op b = "`` prompts from the guide's generator (workbench.core.data)."""
    from workbench.core.arithmetic import generate_arithmetic

    return [r["prompt"] for r in generate_arithmetic(n, seed)]


def make_timer(device: str) -> Callable[[Callable[[], object]], float]:
    import torch

    cuda = device.startswith("cuda")

    def timed(fn: Callable[[], object]) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return timed


def interleaved(contenders: dict[str, Callable[[], object]], reps: int, warmup: int, timed) -> dict[str, list[float]]:
    """Run each contender ``warmup`` times (untimed), then ``reps`` timed rounds, reversing the order every round."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(contenders[name]))
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios (the two were measured back to back in the same round)."""
    return [a / b for a, b in zip(num, den)]


def print_times(times: dict[str, list[float]], unit: str = "s") -> None:
    width = max(len(n) for n in times)
    print(f"{'contender':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}  {'reps':>4}")
    for name, ts in times.items():
        print(f"{name:<{width}}  {median(ts):>8.4f}{unit}  {min(ts):>8.4f}{unit}  {max(ts):>8.4f}{unit}  {len(ts):>4}")


def machine_line(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} threads={torch.get_num_threads()}, "
        f"device={device}, python {platform.python_version()}, date {date.today().isoformat()}"
    )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (other processes on the machine add noise)"
    except OSError:
        return "load average unavailable"


def verdict(name: str, value: float, target: str, ok: bool) -> str:
    return f"{name} = {value:.3f} (target {target}): {'MET' if ok else 'MISSED'}"


def finish(summary: str, ok: bool, check: bool) -> None:
    print(summary)
    sys.stdout.flush()
    sys.exit(1 if (check and not ok) else 0)

"""The checks on a routing run's options (`workbench route`), before any model loads: each bad combination is one
``WorkbenchError`` line naming the flags."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import WorkbenchError


def check_route_options(
    router: str,
    prompts: str | None,
    evaluate: bool,
    fit: Path | None = None,
    router_file: Path | None = None,
    adapter: Path | None = None,
    threshold: float = 0.5,
) -> None:
    """Refuse an unknown router, neither or both of ``prompts`` and ``evaluate``, ``fit`` for a router that is not
    fitted or together with ``router_file``, the lens router without an adapter, and a threshold outside [0, 1]."""
    from .routers import FITTED, ROUTERS

    if router not in ROUTERS:
        raise WorkbenchError(f"--router {router!r}: choose one of {', '.join(ROUTERS)}")
    if (prompts is None) == (not evaluate):
        raise WorkbenchError('give --prompts "p1|p2" (or @file.txt) or --eval, one of the two')
    if fit is not None and router not in FITTED:
        raise WorkbenchError(f"--fit is for fitted routers ({', '.join(FITTED)}), not {router}")
    if fit is not None and router_file is not None:
        raise WorkbenchError("--fit and --router-file exclude each other: fit a new router or load one")
    if router == "lens" and adapter is None:
        raise WorkbenchError(
            "the lens router reads a trained dual-reward adapter: pass --adapter RUN/seed-42/phase1_adapter"
        )
    if not 0.0 <= threshold <= 1.0:
        raise WorkbenchError(f"--threshold {threshold} is not a probability: pass a value in [0, 1]")

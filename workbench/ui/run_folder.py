"""What a run folder offers the layer explorer: its adapters and the base model's probe result."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.models import is_adapter_dir
from ..core.results import read_result
from ..experiment.layout import RunLayout


def run_artifacts(run_dir: str | Path | None) -> tuple[dict[str, Path], dict | None]:
    """What a run folder offers the explorer: its phase-1 and phase-2 adapters (of the first training seed) and the
    base model's probe result. Nothing (and no error) for None; a folder that does not exist is a one-line error."""
    if run_dir is None or str(run_dir).strip() == "":
        return {}, None
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WorkbenchError(
            f"run folder {str(run_dir)!r} does not exist: pass a folder `workbench run` wrote, or none"
        )
    run = RunLayout(run_dir)
    files = next(iter(run.seeds().values()))  # the first training seed's, or the run folder's own
    adapters = {
        name: folder
        for name, folder in (("phase 1", files.phase1_adapter), ("phase 2", files.phase2_adapter))
        if is_adapter_dir(folder)
    }
    probe = read_result(run.baseline_classifier) if run.baseline_classifier.is_file() else None
    return adapters, probe

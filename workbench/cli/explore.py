"""`workbench explore`: the layer explorer as a web page."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..core.errors import WorkbenchError
from ._app import (
    DeviceMapOpt,
    DtypeOpt,
    ModelOpt,
    TaskOpt,
    app,
    flag,
    option,
)


@app.command("explore")
def explore_cmd(
    model: ModelOpt = "default",
    run_dir: flag(Path, "--run", help="run folder whose phase-1/phase-2 adapters and probe are offered") = None,
    port: option(int, "--port", help="port on 127.0.0.1") = 8866,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    task: TaskOpt = None,
):
    """Serve the layer explorer (notebook 06) with Voila on http://127.0.0.1:PORT/ until Ctrl-C (or SIGTERM)."""
    from ..core.devices import resolve_device, resolve_dtype
    from ..core.models import DEVICE_MAPS
    from ..ui.explorer import serve_until_stopped

    resolve_dtype(dtype, resolve_device(None))  # bad flags fail here, not inside the served page
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise WorkbenchError(f"--device-map {device_map!r}: use one of {', '.join(DEVICE_MAPS)}")
    if task is None and run_dir is not None and (run_dir / "run.json").is_file():  # a run's explorer shows its task
        task = (json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("settings") or {}).get("task_file")
    if task is not None:
        from ..tasks.spec import load_task

        load_task(task)  # a bad task fails here, not inside the served page

    print(
        f"layer explorer: http://127.0.0.1:{port}/ (model {model}{f', run {run_dir}' if run_dir else ''}; Ctrl-C stops it)"
    )
    raise typer.Exit(serve_until_stopped(model, run_dir, port, dtype, device_map, task))

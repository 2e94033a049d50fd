"""workbench: probes, the logit lens and dual-reward LoRA for vocabulary-aligned classifiers in language models.

Nine layers, each importing only from the ones below it (tests/test_layers.py, docs/concepts.md): ``core`` (models,
activations, lens, probes), ``tasks`` (task files, their sources and data), ``training`` (config, losses, loop, GRPO),
``causal`` and ``routing`` side by side, ``experiment`` (run layout, phases, engine, claims, report, publishing),
``ui`` (plots, widgets, the explorer server) and ``study`` (many run folders as jobs on an executor) side by side; the
CLI sits on top. The names below are the short API (``import workbench as
wb; wb.load_model(...)``); they load lazily so that `workbench --help` does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {  # name -> (module, attribute)
    "WorkbenchError": ("core.errors", "WorkbenchError"),
    "load_model": ("core.models", "load_model"),
    "LoadedModel": ("core.models", "LoadedModel"),
    "default_classifier_layer": ("core.guide", "classifier_layer"),
    "capture_last_token": ("core.activations", "capture_last_token"),
    "probe_layers": ("core.probes", "probe_layers"),
    "logit_lens": ("core.lens", "logit_lens"),
    "resolve_targets": ("core.lens", "resolve_targets"),
    "classifier_probe": ("core.readouts", "classifier_probe"),
    "lens_readout": ("core.readouts", "lens_readout"),
    "parse_classes": ("core.tasks", "parse_classes"),
    "parse_prompt_list": ("core.tasks", "parse_prompt_list"),
    "guide_classes": ("core.arithmetic", "guide_classes"),
    "write_result": ("core.results", "write_result"),
    "read_result": ("core.results", "read_result"),
    "generate_arithmetic": ("core.arithmetic", "generate_arithmetic"),
    "read_jsonl": ("core.data", "read_jsonl"),
    "load_config": ("training.config", "load_config"),
    "load_task": ("tasks.spec", "load_task"),
    "task_data": ("tasks.data", "task_data"),
    "build_config": ("training.config", "build_config"),
    "train": ("training.loop", "train"),
    "RunLayout": ("experiment.layout", "RunLayout"),
}


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name]
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))

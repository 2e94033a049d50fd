"""workbench: probes, logit lens and dual-reward LoRA for vocabulary-aligned operation classifiers.

Attributes load lazily so that `workbench --help` does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "WorkbenchError": "errors",
    "load_model": "models",
    "LoadedModel": "models",
    "default_classifier_layer": "models",
    "capture_last_token": "activations",
    "probe_layers": "probes",
    "logit_lens": "lens",
    "resolve_targets": "lens",
    "classifier_probe": "introspect",
    "lens_readout": "introspect",
    "parse_classes": "tasks",
    "parse_prompt_list": "tasks",
    "seed_classes": "tasks",
    "write_result": "results",
    "generate_arithmetic": "data",
    "read_jsonl": "data",
    "load_config": "config",
    "build_config": "config",
    "train": "training",
    "read_result": "results",
}


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))

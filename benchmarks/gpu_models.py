"""Randomly initialised Llamas with the published shapes of Llama-3.2-1B and Llama-3.1-8B (no hub needed).

Speed and memory depend on the shapes, not on the weights, so a benchmark can measure a 1B or 8B step on a machine
that cannot download the real checkpoints. The model is built directly on the target device in the target dtype
(``torch.device`` context plus ``from_config(dtype=...)``), never materialised on the CPU first.

    spec "random:llama-3.2-1b" | "random:llama-3.1-8b"   (optionally "...@layers=N" to cut the depth for a smoke test)

Shapes are those of the models' config.json files on the hub (hidden size, layers, heads, KV heads, MLP width,
vocabulary, RoPE with the llama3 scaling, tied embeddings for 1B only).
"""

from __future__ import annotations

import torch

PREFIX = "random:"

SHAPES: dict[str, dict] = {
    "llama-3.2-1b": dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        head_dim=64,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
        rope_factor=32.0,
    ),
    "llama-3.1-8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        head_dim=128,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
        rope_factor=8.0,
    ),
}

# Parameter counts of the real checkpoints (for the test that the shapes are right).
PUBLISHED_PARAMETERS = {"llama-3.2-1b": 1_235_814_400, "llama-3.1-8b": 8_030_261_248}


def is_random(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, int | None]:
    """``random:llama-3.2-1b@layers=2`` -> ("llama-3.2-1b", 2); an unknown name is a ValueError naming the choices."""
    name, _, option = spec.removeprefix(PREFIX).partition("@")
    if name not in SHAPES:
        raise ValueError(f"unknown random model {spec!r}: use one of {', '.join(PREFIX + n for n in SHAPES)}")
    layers = None
    if option:
        key, _, value = option.partition("=")
        if key != "layers" or not value.isdigit() or int(value) < 1:
            raise ValueError(f"{spec!r}: the only option is @layers=N (N >= 1)")
        layers = int(value)
    return name, layers


def llama_config(spec: str):
    from transformers import LlamaConfig

    name, layers = parse(spec)
    shape = dict(SHAPES[name])
    factor = shape.pop("rope_factor")
    if layers is not None:
        shape["num_hidden_layers"] = layers
    return LlamaConfig(
        **shape,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=128000,
        eos_token_id=128001,
        attn_implementation="eager",
    )


def build_random(spec: str, dtype: torch.dtype, device: str, seed: int = 0):
    """A LlamaForCausalLM of the spec's shape, random weights (the architecture's own init), on ``device`` in
    ``dtype``, eager attention, in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(llama_config(spec), dtype=dtype, attn_implementation="eager")
    return model.eval()


def byte_tokenizer():
    """A minimal fast tokenizer (one token per printable character) for the bridge to hold: the benchmarks feed token
    ids directly, and a random model has no tokenizer of its own. Needs no download and no embedded model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + [chr(c) for c in range(32, 127)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    # No BOS token: TransformerLens then keeps the tokenizer as given (with one it would re-load it by name).
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")

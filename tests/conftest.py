"""Fixtures: a tiny random Llama (built here, milliseconds) and, for integration tests, the embedded SmolLM2-135M."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

WORDS = ["multiply", "add", "subtract", "divide", "sub", "tract"]


def build_tiny_tokenizer():
    """A word/char-level fast tokenizer that splits arithmetic like SmolLM2 does ('7',' *',' ','8',' =',' ') and, like
    it, decodes by joining the pieces ('5','6','.' -> '56.')."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    chars = [chr(c) for c in range(32, 127)]
    ops = [f" {c}" for c in "*+-/="]
    words = WORDS + [f" {w}" for w in WORDS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + chars + ops + words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[a-z]+| ?[*+\-/=]|."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def build_tiny_llama(vocab_size: int, n_layers: int = 4, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A local HF model folder: tiny random Llama (4 layers, d=32) + its tokenizer, safetensors weights."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    build_tiny_llama(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir):
    from workbench.core.models import load_model

    return load_model(str(tiny_dir), device="cpu")


@pytest.fixture(scope="session")
def adapter(tiny_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on v_proj/o_proj, saved in peft's format."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=16, target_modules=["v_proj", "o_proj"], init_lora_weights=False)
    )
    path = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M (converted once into $WORKBENCH_CACHE or the user cache)."""
    from workbench.core.models import load_model

    return load_model("default", device="cpu")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """Arithmetic SFT records for the tiny model: train.jsonl (48) and eval.jsonl (16) beside it (modules with other
    needs define their own)."""
    from workbench.core.data import generate_arithmetic, write_jsonl

    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, generate_arithmetic(48, 42))
    write_jsonl(path.with_name("eval.jsonl"), generate_arithmetic(16, 7))
    return path


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`workbench run all --quick --seeds 2` on the embedded model, once per session: every phase's notebook executed
    into one run folder. Returns (folder, exit status, stdout, stderr)."""
    from helpers import run_cli

    out = tmp_path_factory.mktemp("quick") / "run"
    # at the thread count the golden run had (torch's default on the 2-core machine): float sums, and so the last
    # digits tests/test_golden.py compares, depend on it
    proc = run_cli("run", "all", "--quick", "--seeds", "2", "--out", out, timeout=1500, env={"OMP_NUM_THREADS": "2"})
    return out, proc.returncode, proc.stdout, proc.stderr

"""Fixtures: a tiny random Llama (built here, milliseconds) and, for integration tests, the embedded SmolLM2-135M."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`'s two workers share the 2 cores: one thread each (and children;
    os.environ["OMP_NUM_THREADS"] = "1"  # MKL follows it, so a child given OMP_NUM_THREADS=2 gets 2 BLAS threads too)

import pytest  # noqa: E402
import torch  # noqa: E402

# `make test` runs two pytest-xdist workers with `--dist loadfile`: each file on one worker, so its module fixtures are
# built once. The files that use the session's `quick_run` are one unit (it is built once, on one worker).
QUICK_RUN_FILES = ("test_golden.py", "test_notebooks.py", "test_notebooks_training.py", "test_run_quick.py")

WORDS = ["multiply", "add", "subtract", "divide", "sub", "tract"]


def _unit(file_name: str) -> str:
    return "quick_run" if file_name in QUICK_RUN_FILES else file_name


def pytest_collection_modifyitems(config, items):
    users = {item.path.name for item in items if "quick_run" in getattr(item, "fixturenames", ())}
    if users - set(QUICK_RUN_FILES):
        raise pytest.UsageError(f"{sorted(users - set(QUICK_RUN_FILES))} use quick_run: add them to QUICK_RUN_FILES")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the quick-run files as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class QuickRunTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])

    return QuickRunTogether(config, log)


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

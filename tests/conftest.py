"""Fixtures: tiny random Llamas (built here, milliseconds), the embedded SmolLM2-135M loaded once per worker, and the
suite's two pipelines: the one end-to-end run on the embedded model (``quick_run``) and the wiring run on a tiny
22-layer Llama (``tiny_run``: a task, two seeds, a classifier layer other than SmolLM2's 16)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# PNG export starts Chromium for every figure (seconds each): off for the whole suite and its children; the one test
# that checks a PNG turns it on for itself (tests/test_plots_png.py)
os.environ["WORKBENCH_PNG"] = "0"
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`'s two workers share the 2 cores: one thread each (and children;
    os.environ["OMP_NUM_THREADS"] = "1"  # MKL follows it)

import pytest  # noqa: E402
import torch  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
# `make test` runs two pytest-xdist workers with `--dist loadfile`: each file on one worker, so its module fixtures are
# built once. The files that share a session pipeline are one unit (it is built once, on one worker), and the two
# pipelines' units go first, one to each worker, so neither waits behind the other.
PIPELINE_FILES = {
    "quick_run": ("test_notebooks.py", "test_notebooks_training.py", "test_run_quick.py"),
    "tiny_run": ("test_depth.py", "test_run_causal_route.py", "test_run_seeds.py", "test_task_run.py"),
    "study_world": ("test_study_run.py",),  # studies on tiny models: inline, local, SLURM
}

WORDS = ["multiply", "add", "subtract", "divide", "sub", "tract"]
CLASS_WORDS = ["positive", "negative"]  # the sentiment task's class words, single tokens in the tiny_run tokenizer


def _unit(file_name: str) -> str:
    return next((unit for unit, files in PIPELINE_FILES.items() if file_name in files), file_name)


def pytest_collection_modifyitems(config, items):
    for unit, files in PIPELINE_FILES.items():
        users = {item.path.name for item in items if unit in getattr(item, "fixturenames", ())}
        if users - set(files):
            raise pytest.UsageError(f"{sorted(users - set(files))} use {unit}: add them to PIPELINE_FILES[{unit!r}]")


SLOW_MARKERS = {"slow", "integration", "notebook", "browser"}  # what `make test-unit` leaves out
_unmarked_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if not SLOW_MARKERS & set(report.keywords):
        _unmarked_seconds[report.nodeid] = _unmarked_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """The fast lane's budget, visible: unmarked tests that took more than about a second (not an assertion)."""
    over = sorted(((s, n) for n, s in _unmarked_seconds.items() if s > 1.5), reverse=True)
    if over:
        terminalreporter.write_line(
            "unmarked tests over 1.5 s (mark them slow to keep `make test-unit` within a minute): "
            + ", ".join(f"{n} {s:.1f} s" for s, n in over)
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with each pipeline's files as one unit, and those units handed out first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class PipelinesFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])

        def _assign_work_unit(self, node) -> None:
            for unit in reversed(PIPELINE_FILES):
                if unit in self.workqueue:
                    self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return PipelinesFirst(config, log)


def build_tiny_tokenizer(extra_words=()):
    """A word/char-level fast tokenizer that splits arithmetic like SmolLM2 does ('7',' *',' ','8',' =',' ') and, like
    it, decodes by joining the pieces ('5','6','.' -> '56.'). ``extra_words`` become single tokens too (with and
    without a leading space); any other lower-case word is one unknown token."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    chars = [chr(c) for c in range(32, 127)]
    ops = [f" {c}" for c in "*+-/="]
    words = [*WORDS, *extra_words]
    words = words + [f" {w}" for w in words]
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
    from workbench.core.arithmetic import generate_arithmetic
    from workbench.core.data import write_jsonl

    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, generate_arithmetic(48, 42))
    write_jsonl(path.with_name("eval.jsonl"), generate_arithmetic(16, 7))
    return path


def _run_all(out: Path, *args, cache: Path | None = None):
    """`workbench run all --quick ARGS --out OUT` in a fresh process (the process and its exit status are part of
    what the pipeline tests check), one torch thread. Returns (folder, exit status, stdout, stderr)."""
    from helpers import run_cli

    env = {"OMP_NUM_THREADS": "1", **({"WORKBENCH_CACHE": str(cache)} if cache else {})}
    proc = run_cli("run", "all", "--quick", *args, "--out", out, timeout=1200, env=env)
    return out, proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The suite's one end-to-end pipeline on the embedded model: `workbench run all --quick` (one seed), every
    phase's notebook executed into one run folder."""
    return _run_all(tmp_path_factory.mktemp("quick") / "run")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The pipeline's wiring on a tiny random Llama of TinyLlama's depth (22 layers: classifier layer 12, not 16) whose
    tokenizer has the sentiment task's class words: `workbench run all --quick --task sentiment --seeds 2`, with the
    committed fixture of the VADER data as the task cache (no network). Returns (folder, exit status, stdout, stderr,
    the environment its commands need)."""
    root = tmp_path_factory.mktemp("tiny-run")
    model = root / "llama-22"
    tokenizer = build_tiny_tokenizer(CLASS_WORDS)
    build_tiny_llama(len(tokenizer), n_layers=22).save_pretrained(model)
    tokenizer.save_pretrained(model)
    cache = root / "cache"
    shutil.copytree(FIXTURES / "tasks" / "vader", cache / "tasks" / "vader")
    out, code, stdout, stderr = _run_all(
        root / "run", "--task", "sentiment", "--seeds", "2", "--model", model, cache=cache
    )
    return out, code, stdout, stderr, {"WORKBENCH_CACHE": str(cache)}

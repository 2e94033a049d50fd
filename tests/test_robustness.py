"""Bad input, case by case, through the CLI on the tiny random Llama: every malformed input is one `error:` line that
names it and the fix, exit status 2, no traceback, and no output file created (an existing one is left as it was).
Also: weights and adapters load from safetensors only, a model folder's own Python code never runs, and a run folder
without room is refused before any work.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_one_line_error, cli

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.errors import WorkbenchError

CLASSES = ["--classes", "multiply:7 * 8 = |12 * 5 = ", "--classes", "add:23 + 45 = |17 + 38 = "]
LONG = "7 * 8 = " * 12  # 72 tokens for the tiny model, whose context is 64


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, generate_arithmetic(24, 42))
    return path


@pytest.mark.parametrize(
    "classes,needle",
    [
        (["--classes", ":7 * 8 = |1 * 2 = ", "--classes", "add:1 + 2 = |3 + 4 = "], "empty label"),
        (["--classes", "multiply:7 * 8 = |1 * 2 = "], "at least 2 classes"),
        (["--classes", "multiply:7 * 8 = |12 * 5 = ", "--classes", "add: |17 + 38 = "], "empty prompt at position 1"),
        (["--classes", "multiply:7 * 8 = |12 * 5 = ", "--classes", "add:   "], "no prompts after ':'"),
        (["--classes", "add:1 + 2 = |3 + 4 = ", "--classes", "add:5 + 6 = |7 + 8 = "], "given twice"),
        (["--classes", "multiply:7 * 8 = ", "--classes", "add:23 + 45 = |17 + 38 = "], "at least 2 per class"),
        (["--classes", "multiply:7 * 8 = |7 * 8 = ", "--classes", "add:23 + 45 = |17 + 38 = "], "more than once"),
        (
            ["--classes", f"multiply:{LONG}|12 * 5 = ", "--classes", "add:23 + 45 = |17 + 38 = "],
            "more than the model's context",
        ),
        ([*CLASSES, "--layers", "-1"], "not a layer or range"),
        ([*CLASSES, "--layers", "3-1"], "reversed"),
        ([*CLASSES, "--layers", "0-99"], "out of range"),
        ([*CLASSES, "--test", "|"], "empty prompt"),
    ],
)
def test_classifier_bad_input(tiny_dir, tmp_path, capsys, classes, needle):
    out = tmp_path / "r.json"
    code, _, err = cli(capsys, "introspect", "classifier", "-m", str(tiny_dir), *classes, "--output", str(out))
    assert_one_line_error(code, err, needle)
    assert not out.exists() and not out.with_suffix(".html").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--prompts", "7 * 8 = ", "--targets", ""], "is empty"),
        (["--prompts", "7 * 8 = ", "--targets", " "], "is empty"),
        (["--prompts", "7 * 8 = ", "--targets", "add", "--targets", "add"], "repeat a word"),
        (["--prompts", "7 * 8 = ", "--targets", "\u00fc\u00fc"], "not in the model's vocabulary"),
        (["--prompts", LONG, "--targets", "add"], "more than the model's context"),
        (["--prompts", " |7 * 8 = ", "--targets", "add"], "empty prompt"),
        (["--prompts", "@/nonexistent/prompts.txt", "--targets", "add"], "cannot read"),
        (["--prompts", "7 * 8 = ", "--targets", "add", "--expected", "add|add"], "give one per prompt"),
        (["--prompts", "7 * 8 = ", "--targets", "add", "--expected", "modulo"], "'modulo' is not among --targets"),
    ],
)
def test_logit_lens_bad_input(tiny_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "lens.json"
    out.write_text("precious")
    code, _, err = cli(capsys, "introspect", "logit-lens", "-m", str(tiny_dir), *args, "--output", str(out))
    assert_one_line_error(code, err, needle)
    assert out.read_text() == "precious"


@pytest.mark.slow  # the lens figure's PNG: Chromium starts (seconds) where there is one
def test_unicode_prompts_work(tiny_dir, tmp_path, capsys):
    out = tmp_path / "lens.json"
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(tiny_dir),
        "--prompts",
        "７ × ８ = |ça + 中 = ",
        "--targets",
        "add",
        "--output",
        str(out),
    )
    assert code == 0, err
    assert [r["prompt"] for r in json.loads(out.read_text())["results"]] == ["７ × ８ = ", "ça + 中 = "]


def _train(capsys, tiny_dir, data_file, out, *extra):
    return cli(
        capsys,
        "train",
        "sft",
        "--model",
        str(tiny_dir),
        "--data",
        str(data_file),
        "--output",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--no-progress",
        *extra,
    )


@pytest.mark.parametrize(
    "yaml_text,needles",
    [  # "{cfg}": the message names the config file
        ("model: x\n\tlora_rank: 8\n", ("{cfg} line 2: invalid YAML", "indent with spaces, not tabs")),
        ("lora_rank: big\n", ("{cfg}: key 'lora_rank'",)),
        ("learning_rate: [1, 2]\n", ("{cfg}: key 'learning_rate'",)),
        ("lora_dropout: 2\n", ("{cfg}: key 'lora_dropout'",)),
        ("intermediate_loss:\n  weight: 2\n", ("{cfg}: key 'intermediate_loss.weight'",)),
        ("intermediate_loss:\n  layr: 3\n", ("{cfg}: unknown key 'intermediate_loss.layr'; did you mean 'layer'",)),
        ("- a\n- b\n", ("{cfg}: expected a mapping",)),
        ("data: /nonexistent/train.jsonl\n", ("'/nonexistent/train.jsonl' does not exist",)),
        ("freeze_layers: 3-1\n", ("reversed",)),
        ("freeze_layers: [-1]\n", ("not a layer or range",)),
    ],
)
def test_config_bad_input(tiny_dir, data_file, tmp_path, capsys, yaml_text, needles):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "run"
    if "data:" in yaml_text:  # the file's own data path, not the flag's
        code, _, err = cli(capsys, "train", "sft", "--config", str(cfg), "--model", str(tiny_dir), "--output", str(out))
    else:
        code, _, err = _train(capsys, tiny_dir, data_file, out, "--config", str(cfg))
    assert_one_line_error(code, err, *(n.format(cfg=cfg) for n in needles))
    assert not (out / "adapter_model.safetensors").exists() and not (out / "metrics.json").exists()


def _other_llama(tmp_path):
    """A tiny Llama of another width, with the same tokenizer: an adapter trained on it cannot fit `tiny_dir`."""
    from conftest import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    path = tmp_path / "other-llama"
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_adapter_for_another_model_is_one_line(tiny_dir, data_file, tmp_path, capsys):
    other = _other_llama(tmp_path)
    code, _, err = _train(capsys, other, data_file, tmp_path / "other-run")
    assert code == 0, err
    out = tmp_path / "lens.json"
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(tiny_dir),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "add",
        "--adapter",
        str(tmp_path / "other-run"),
        "--output",
        str(out),
    )
    assert_one_line_error(code, err, "cannot load adapter", "same model")
    assert not out.exists()


def test_truncated_model_weights_are_one_line(tiny_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(broken),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "add",
        "--output",
        str(tmp_path / "lens.json"),
    )
    assert_one_line_error(code, err, "cannot load model")
    assert not (tmp_path / "lens.json").exists()


def test_pickle_adapters_and_weights_are_refused(tiny_dir, data_file, tmp_path, capsys):
    code, _, err = _train(capsys, tiny_dir, data_file, tmp_path / "run")
    assert code == 0, err
    adapter = tmp_path / "run"
    from safetensors.torch import load_file

    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(tiny_dir),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "add",
        "--adapter",
        str(adapter),
        "--output",
        str(tmp_path / "lens.json"),
    )
    assert_one_line_error(code, err, "adapter_model.safetensors", "pickle")
    import shutil

    pickled = tmp_path / "pickled-model"
    shutil.copytree(tiny_dir, pickled)
    state = load_file(pickled / "model.safetensors")
    torch.save(state, pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(pickled),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "add",
        "--output",
        str(tmp_path / "lens.json"),
    )
    assert_one_line_error(code, err, "cannot load model")


def test_a_model_folders_own_code_never_runs(tiny_dir, tmp_path, capsys):
    import shutil

    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_dir, evil)
    marker = tmp_path / "code-ran"
    (evil / "modeling_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import LlamaForCausalLM as EvilForCausalLM\n"
    )
    config = json.loads((evil / "config.json").read_text())
    config["auto_map"] = {
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
        "AutoConfig": "modeling_evil.EvilConfig",
    }
    (evil / "config.json").write_text(json.dumps(config))
    out = tmp_path / "lens.json"
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(evil),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "add",
        "--output",
        str(out),
    )
    assert not marker.exists(), "trust_remote_code must stay off"
    assert code == 0 or ("error: " in err and "Traceback" not in err), err


def test_a_run_folder_without_room_is_refused_before_any_work(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from workbench.experiment import engine

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(WorkbenchError, match=r"only 5 MB free .* needs about 96 MB"):
        engine.run("all", tmp_path / "run", echo=lambda line: None)
    assert not (tmp_path / "run" / "run.json").exists()

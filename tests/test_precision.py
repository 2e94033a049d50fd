"""Precision, devices and memory: --dtype and --device resolved and checked, the bridge told the weights' dtype, LoRA
kept fp32 on a bf16 base, --device-map dispatching through accelerate, and the memory estimate refusing a run that
cannot fit before anything loads. Bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_one_line_error, cli
from transformers import LlamaConfig

from workbench.core import memory
from workbench.core.activations import capture_last_token
from workbench.core.devices import resolve_device, resolve_dtype
from workbench.core.errors import WorkbenchError
from workbench.core.lens import lens_log_probs
from workbench.core.models import check_device_map, load_model

CPU_ONLY = not torch.cuda.is_available()
LENS = ["introspect", "logit-lens", "--prompts", "7 * 8 = |1 + 2 = ", "--targets", "add"]


def test_auto_dtype_is_fp32_on_the_cpu_and_names_are_checked():
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bf16", "cpu") is torch.bfloat16 and resolve_dtype("float32", "cpu") is torch.float32
    with pytest.raises(WorkbenchError, match="float16 on the CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(WorkbenchError, match="use one of auto, float32, bfloat16, float16"):
        resolve_dtype("int8", "cpu")


@pytest.mark.skipif(not CPU_ONLY, reason="needs a machine without CUDA")
def test_devices_that_are_not_there_are_refused():
    assert resolve_device(None) == "cpu" and resolve_device("auto") == "cpu"
    for bad, needle in [("cuda", "use --device cpu"), ("cuda:1", "use --device cpu"), ("gpu", "is not a device")]:
        with pytest.raises(WorkbenchError, match=needle):
            resolve_device(bad)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dtype", "float16", "--device", "cpu"], "--dtype float16 on the CPU"),
        (["--dtype", "float64"], "--dtype 'float64' is not a dtype"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--device-map", "everywhere"], "--device-map 'everywhere'"),
        (["--device-map", "auto", "--device", "cpu"], "exclude each other"),
    ],
)
def test_bad_precision_and_device_flags(tiny_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "lens.json"
    out.write_text("precious")
    code, _, err = cli(capsys, *LENS, "-m", str(tiny_dir), *args, "--output", str(out))
    assert_one_line_error(code, err, needle)
    assert out.read_text() == "precious"


def test_bf16_bridge_reports_bf16_and_tracks_fp32(tiny_dir):
    fp32 = load_model(str(tiny_dir), device="cpu")
    bf16 = load_model(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert bf16.bridge.cfg.dtype is torch.bfloat16 and bf16.describe()["dtype"] == "bfloat16"
    assert {p.dtype for p in bf16.hf_model.parameters()} == {torch.bfloat16}
    ids = torch.tensor([fp32.token_ids("7 * 8 = ")])
    with torch.inference_mode():
        a, b = fp32.bridge(ids), bf16.bridge(ids).float()
    assert (a - b).abs().max() < 0.05 and torch.equal(a.argmax(-1), b.argmax(-1))


def test_lora_stays_fp32_on_a_bf16_base(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from workbench.core.models import load_hf

    hf, _, _ = load_hf(str(tiny_dir))
    get_peft_model(hf, LoraConfig(r=2, target_modules=["v_proj"], init_lora_weights=False)).save_pretrained(tmp_path)
    lm = load_model(str(tiny_dir), device="cpu", dtype="bfloat16", adapter=tmp_path)
    lora = {p.dtype for n, p in lm.hf_model.named_parameters() if "lora_" in n}
    assert lora == {torch.float32}
    with torch.inference_mode():
        assert lm.bridge(torch.tensor([lm.token_ids("1 + 2 = ")])).dtype is torch.bfloat16


def test_device_map_auto_dispatches_and_reads_the_same(tiny_dir):
    """On this CPU machine accelerate places everything on the CPU: the dispatched bridge must read what the plain
    one reads (an identity check of the dispatch path)."""
    plain = load_model(str(tiny_dir), device="cpu")
    mapped = load_model(str(tiny_dir), device_map="auto")
    prompts = ["7 * 8 = ", "1 + 2 = "]
    reads = [lens_log_probs(lm, capture_last_token(lm, prompts, [2])[:, 0]) for lm in (plain, mapped)]
    assert torch.equal(*reads)


def test_maps_the_bridge_refuses_are_one_line():
    check_device_map({"": "cpu"})
    check_device_map({"model.embed_tokens": 0, "model.layers.0": 1, "lm_head": 1})
    with pytest.raises(WorkbenchError, match="GPU mixed with offload; use --dtype bfloat16, more GPUs"):
        check_device_map({"model.embed_tokens": 0, "model.layers.0": "cpu", "lm_head": "disk"})


def llama_shape(**kw) -> LlamaConfig:
    return LlamaConfig(tie_word_embeddings=False, **kw)


LLAMA_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
)


def test_weights_estimate_counts_the_real_parameters(smol_config):
    shape = memory.Shape.of(smol_config)
    from transformers import AutoModelForCausalLM

    assert shape.parameters == AutoModelForCausalLM.from_config(smol_config).num_parameters()
    est = memory.estimate(shape, torch.bfloat16, batch=1, seq=16)
    assert est.weights == 2 * shape.parameters


@pytest.fixture(scope="module")
def smol_config(tiny_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_dir)


def test_training_estimate_by_hand():
    """One layer, d=4, f=8, 2 heads, vocab 10, batch 1, seq 2, fp32: every term computed by hand."""
    shape = memory.Shape(parameters=100, n_layers=1, d_model=4, d_mlp=8, n_heads=2, vocab=10)
    est = memory.estimate(shape, torch.float32, batch=1, seq=2, training=True, trainable_params=10)
    per_layer = (13 * 4 + 6 * 8) * 2 * 4 + 2 * 4 * (4 + 2)  # hidden terms (4-byte elements) + heads x S^2 x 6 bytes
    assert est.weights == 400 and est.trainable == 40 and est.gradients_and_optimizer == 120
    assert est.activations == per_layer + 2 * (1 * 2 * 10 * 4)
    checkpointed = memory.estimate(shape, torch.float32, 1, 2, training=True, trainable_params=10, checkpointing=True)
    assert checkpointed.activations == 1 * 2 * 4 * 4 + per_layer + 2 * 80


def test_a_model_that_cannot_fit_is_refused_before_loading(tmp_path, capsys):
    """A folder with only a 70B config: the estimate (140 GiB of bf16 weights) exceeds any machine's free memory
    here, so the command stops before it looks for the weights."""
    llama_shape(**LLAMA_70B).save_pretrained(tmp_path)
    out = tmp_path / "lens.json"
    code, _, err = cli(capsys, *LENS, "-m", str(tmp_path), "--dtype", "bfloat16", "--output", str(out))
    assert_one_line_error(code, err, "needs about", "GiB free", "--dtype bfloat16")
    assert "weights 131.4 GiB" in err and not out.exists()


def test_results_record_the_dtype(tiny_dir, tmp_path, capsys):
    out = tmp_path / "lens.json"
    code, _, err = cli(capsys, *LENS, "-m", str(tiny_dir), "--dtype", "bfloat16", "--output", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["settings"]["dtype"] == "bfloat16"


def test_lora_parameter_count_equals_peft(tiny_dir, smol_config):
    from peft import LoraConfig, get_peft_model

    from workbench.core.models import load_hf

    hf, _, _ = load_hf(str(tiny_dir))
    peft_model = get_peft_model(hf, LoraConfig(r=4, target_modules=["v_proj", "o_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert memory.lora_parameters(smol_config, ["v_proj", "o_proj"], 4) == trainable
    frozen = memory.lora_parameters(smol_config, ["v_proj", "o_proj"], 4, frozenset({0, 1}))
    assert frozen == trainable // 2  # 2 of 4 layers frozen


def test_estimate_command_reads_only_the_config(tmp_path, capsys):
    llama_shape(**LLAMA_70B).save_pretrained(tmp_path)  # no weights at all
    code, out, err = cli(capsys, "estimate", "-m", str(tmp_path), "--dtype", "bfloat16", "--train", "--seq-len", "64")
    assert code == 0, err
    assert "weights 131.42 GiB" in out and "does NOT fit" in out

"""The same code on a CUDA device (skipped where there is none): results match the CPU's."""

import json

import pytest
import torch

from workbench.core.activations import capture_last_token
from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.lens import logit_lens
from workbench.core.models import load_model
from workbench.core.probes import probe_layers
from workbench.training.config import build_config
from workbench.training.evaluation import lens_metrics
from workbench.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PROMPTS = ["7 * 8 = ", "12 * 5 = ", "23 + 45 = ", "17 + 38 = ", "50 - 23 = ", "89 - 34 = ", "48 / 6 = ", "81 / 9 = "]
TARGETS = ["multiply", "add", "subtract", "divide"]
OPS = {t: t for t in TARGETS}


@pytest.fixture(scope="module")
def gpu_lm(tiny_dir):
    return load_model(str(tiny_dir), device="cuda", dtype="float32")  # auto would be bf16 on a GPU


def test_bridge_capture_lens_probe_on_cuda_match_cpu(gpu_lm, tiny_lm):
    assert next(gpu_lm.hf_model.parameters()).is_cuda
    ids = gpu_lm.tokenize(PROMPTS).input_ids
    assert ids.is_cuda
    with torch.no_grad():
        torch.testing.assert_close(gpu_lm.bridge(ids), gpu_lm.hf_model(ids).logits)
    gpu, cpu = capture_last_token(gpu_lm, PROMPTS), capture_last_token(tiny_lm, PROMPTS)
    assert not gpu.is_cuda
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)
    lens_gpu, lens_cpu = (
        logit_lens(gpu_lm, PROMPTS, TARGETS, all_layers=True),
        logit_lens(tiny_lm, PROMPTS, TARGETS, all_layers=True),
    )
    for a, b in zip(lens_gpu.results, lens_cpu.results):
        assert a.top_token_id == b.top_token_id
        for w in TARGETS:
            assert a.target_probs[w] == pytest.approx(b.target_probs[w], rel=1e-3, abs=1e-6)
    labels = [op for op in ("multiply", "add", "subtract", "divide") for _ in range(2)]
    layers = list(range(gpu_lm.n_layers))
    on_gpu, on_cpu = (probe_layers(f.numpy(), labels, layers, seed=0).layer_results for f in (gpu, cpu))
    assert [r.accuracy for r in on_gpu] == [r.accuracy for r in on_cpu]  # features within 1e-4: the same fits


def test_training_on_cuda_and_the_adapter_on_cpu(tiny_dir, tmp_path):
    data, ev = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    write_jsonl(data, generate_arithmetic(32, 42))
    write_jsonl(ev, generate_arithmetic(16, 7))
    cfg = build_config(
        {
            "model": str(tiny_dir),
            "data": str(data),
            "eval_data": str(ev),
            "output": str(tmp_path / "run"),
            "max_steps": 4,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "freeze_layers": "0",
            "intermediate_loss": {"enabled": True, "weight": 0.4},
            "save_every": 2,
            "dtype": "float32",
        }
    )
    metrics = train(cfg, device="cuda", progress=False)
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 4
    records = [json.loads(x) for x in ev.read_text().splitlines()]
    on_cpu = lens_metrics(
        load_model(str(tiny_dir), device="cpu", adapter=tmp_path / "run"), records, OPS, metrics["layer"]
    )
    assert on_cpu["mean_correct_target_prob"] == pytest.approx(
        metrics["after"]["lens"]["mean_correct_target_prob"], rel=1e-3
    )


def test_cached_greedy_on_cuda_equals_cache_free(gpu_lm):
    from workbench.core.generation import greedy_answers

    assert greedy_answers(gpu_lm, PROMPTS, 6) == greedy_answers(gpu_lm, PROMPTS, 6, use_cache=False)


def test_auto_is_bf16_on_cuda(tiny_dir, tiny_lm):
    lm = load_model(str(tiny_dir), device="cuda")
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16: auto stays fp32")
    assert lm.bridge.cfg.dtype is torch.bfloat16 and lm.describe()["dtype"] == "bfloat16"
    ids = lm.tokenize(PROMPTS[:1]).input_ids
    with torch.no_grad():
        gpu, cpu = lm.bridge(ids).float().cpu(), tiny_lm.bridge(ids.cpu())
    assert (gpu - cpu).abs().max() < 0.1

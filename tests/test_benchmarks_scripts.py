"""Cheap checks of benchmarks/train_throughput.py and benchmarks/gpu_check.sh (no GPU needed): the shell script's
syntax, the random shapes against the published parameter counts, the report writer on fake numbers, and (slow)
a tiny-model run of the throughput script and a dry run of the GPU check on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_models  # noqa: E402
import train_throughput as tt  # noqa: E402


def test_gpu_check_is_valid_bash():
    res = subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(BENCH / "gpu_check.sh", os.X_OK)


def test_gpu_check_refuses_an_unknown_argument():
    res = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --bogus" in res.stderr


@pytest.mark.parametrize("name", list(gpu_models.SHAPES))
def test_random_shapes_have_the_published_parameter_counts(name):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(gpu_models.llama_config(gpu_models.PREFIX + name))
    assert sum(p.numel() for p in model.parameters()) == gpu_models.PUBLISHED_PARAMETERS[name]
    assert gpu_models.parse(f"random:{name}@layers=2") == (name, 2)
    with pytest.raises(ValueError, match="use one of"):
        gpu_models.parse("random:llama-9b")


def fake_result(model: str, scale: float = 1.0) -> dict:
    results, ratios = [], []
    for n in (16, 512):
        secs = {"bridge": 1.2 * scale * n / 16, "hf_eager": 1.0 * scale * n / 16, "hf_sdpa": 0.8 * scale * n / 16}
        for c, s in secs.items():
            row = dict(contender=c, length=n, median_s=s, min_s=s, max_s=s, reps=1, tokens_per_s=n / s)
            results.append({**row, "step_peak_mib": 100.0 * n / 16 if c != "hf_sdpa" else None})
        ratios.append(dict(length=n, bridge_over_hf_eager=secs["bridge"] / secs["hf_eager"], bridge_over_hf_sdpa=1.5))
    return dict(model=model, dtype="bfloat16", device="cuda", results=results, ratios=ratios, ok=False)


@pytest.mark.slow  # the report renders through the publisher (imports the experiment layer)
def test_table_summary_and_report_on_fake_numbers(tmp_path):
    result = fake_result("default")
    table = tt.format_table(result)
    assert "| 512 | hf_eager | 32.0000 | 16 | 3200 | 1.200 |" in table
    assert "| 512 | hf_sdpa | 25.6000 | 20 | - | 1.500 |" in table
    summary = tt.summary_line(result)
    assert summary.startswith("SUMMARY train_throughput:") and "bridge/hf_eager 1.200" in summary
    assert "MISSED" in summary

    out = tmp_path / "results"
    out.mkdir()
    (out / "env.json").write_text(
        json.dumps(dict(date="2026-12-01", commit="abc1234", gpu="NVIDIA H200", dtype="bf16"))
    )
    (out / "steps.tsv").write_text("cuda_tests\tok\t0\t40\ntt_default\tok\t0\t61\ncapture\ttimeout\t124\t60\n")
    (out / "tt_default.json").write_text(json.dumps(result))
    (out / "tt_llama-3.1-8b.json").write_text(json.dumps(fake_result("random:llama-3.1-8b", 2.0)))
    (out / "capture.log").write_text("noise\nSUMMARY capture_vs_hf: capture/hf = 0.701 (target <= 1.15): MET; x\n")
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    page = "# Performance\n\n## CPU\n\nmeasured here\n\n<!-- gpu_check:start -->\n<!-- gpu_check:end -->\n\ntail\n"
    (root / "docs" / "performance.md").write_text(page)
    tt.report(out, root)
    tt.report(out, root)  # idempotent: one section, replaced in place
    text = (root / "docs" / "performance.md").read_text()
    assert text.startswith("# Performance\n\n## CPU\n\nmeasured here\n") and text.endswith("\n\ntail\n")
    assert "NVIDIA H200" in text and "abc1234" in text and "Dry run" not in text and text.count("NVIDIA H200") == 1
    assert "| capture | timeout | 124 | 60 |" in text
    assert "| random:llama-3.1-8b | bfloat16 | 512 |" in text and "| 1.200 | 1.500 | 3200 / 3200 / - |" in text
    assert "capture / hf (capture_vs_hf.py): 0.701" in text
    assert "greedy_decoding: no SUMMARY line" in text
    from workbench.experiment.publish import stale

    assert stale(root) == []  # the block is what its record renders


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


@pytest.mark.slow
def test_train_throughput_on_a_tiny_model(tiny_dir, tmp_path):
    """All three contenders, losses equal before training, memory from the fresh-subprocess children."""
    out = tmp_path / "tt.json"
    cmd = [sys.executable, str(BENCH / "train_throughput.py"), "--model", str(tiny_dir), "--lengths", "8,32"]
    res = subprocess.run(cmd + ["--reps", "1", "--json", str(out)], capture_output=True, text=True, env=env())
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "SUMMARY train_throughput:" in res.stdout
    result = json.loads(out.read_text())
    assert {(r["contender"], r["length"]) for r in result["results"]} == {
        (c, n) for c in tt.CONTENDERS for n in (8, 32)
    }
    assert max(result["losses_before"].values()) - min(result["losses_before"].values()) < 1e-4
    assert all(r["step_peak_mib"] is not None and r["tokens_per_s"] > 0 for r in result["results"])
    assert result["memory_method"].startswith("fresh subprocess per contender")
    assert result["lora"]["trainable_parameters"] > 0 and result["resident_mib"]["adam"] > 0


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_table(tiny_dir, tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    doc = root / "docs" / "performance.md"
    doc.write_text("# Performance\n\n## CPU\n\nkept\n")
    extra = dict(
        GPU_CHECK_DRY="1",
        GPU_CHECK_MODELS=str(tiny_dir),
        GPU_CHECK_SKIP="cuda_tests greedy capture",
        GPU_CHECK_OUT=str(tmp_path / "out"),
        GPU_CHECK_ROOT=str(root),
        PYTHON=sys.executable,
    )
    res = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], capture_output=True, text=True, env=env(**extra))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "SUMMARY gpu_check:" in res.stdout and "0 failed or timed out" in res.stdout
    text = doc.read_text()
    assert text.startswith("# Performance\n\n## CPU\n\nkept\n")
    assert "Dry run on the CPU" in text and "| greedy | skipped | - | 0 |" in text
    assert f"| {tiny_dir} | float32 | 32 |" in text


def test_lens_vocab_peak_meter_sees_an_allocation_made_inside_it():
    """benchmarks/lens_vocab.py's RSS meter sees a 64 MiB buffer written inside the block, and not one made before."""
    import lens_vocab
    import numpy as np

    before = np.ones(2**24, dtype=np.float32)  # 64 MiB, resident before the meter starts
    with lens_vocab.PeakRSS() as quiet:
        before.sum()
    with lens_vocab.PeakRSS() as loud:
        inside = np.ones(2**24, dtype=np.float32)
        time.sleep(0.01)
    assert loud.grew >= 60 * 2**20 > quiet.grew and inside.size


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.3, 0.7])
def test_lens_vocab_judges_the_lens_growth_against_the_unembedding(tiny_dir, monkeypatch, share):
    """The verdict on the tiny model, with a meter that reports a known growth: a lens that grows by 70% of the
    unembedding (vocab x d_model fp32, counted by hand here) misses the target, one that grows by 30% meets it."""
    import lens_vocab
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_dir)
    unembedding = config.vocab_size * config.hidden_size * 4

    class Meter:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.grew = int(share * unembedding)

    monkeypatch.setattr(lens_vocab, "PeakRSS", Meter)
    result = lens_vocab.main(["--model", str(tiny_dir), "--reps", "1", "--batch-size", "4", "--words", " add| sub"])
    assert result["unembedding_bytes"] == unembedding
    assert result["lens_over_unembedding"] == pytest.approx(share, abs=1e-3) and result["ok"] is (share < 0.5)


@pytest.mark.slow
def test_routing_latency_on_a_tiny_model(tiny_dir, tmp_path):
    """benchmarks/routing_latency.py in-process on the tiny Llama (--quick, no adapter): every contender timed on every
    prompt, the early exit entered fewer blocks than the full forward, and the JSON holds the ratios and the
    LayerSkip-style fields (positive numbers; no wall-clock threshold)."""
    import routing_latency
    import torch

    out = tmp_path / "routing.json"
    threads = torch.get_num_threads()
    argv = ["--model", str(tiny_dir), "--quick", "--threads", "1", "--warmup", "1", "--json", str(out)]
    result = routing_latency.main(argv + ["--routers", "regex,direction,probe,neural"])
    assert torch.get_num_threads() == threads  # restored for the rest of the session
    doc = json.loads(out.read_text())
    assert doc["settings"]["prompts"] == 12 and doc["settings"]["routers"] == ["regex", "direction", "probe", "neural"]
    assert set(doc["decision_s"]) == {"full_forward", "regex", "direction", "probe", "neural"}
    assert all(s["n"] == 12 and s["median"] >= 0 for s in doc["decision_s"].values())
    n_layers, early = doc["settings"]["n_layers"], doc["settings"]["classifier_layer"] + 1
    assert doc["blocks_entered"]["full_forward"] == n_layers and doc["blocks_entered"]["regex"] == 0
    assert doc["blocks_entered"]["probe"] == doc["blocks_entered"]["direction"] == early < n_layers
    ratios = [doc["ratios"]["vs_full_forward"][r] for r in ("direction", "probe", "neural")]
    ratios += [doc["ratios"]["neural_vs"][r] for r in ("direction", "probe")]
    for st in ratios:
        assert set(st) == {"median_over_median", "median_of_paired"}
        assert all(isinstance(v, float) and v > 0 for v in st.values())
    assert set(doc["end_to_end_s"]) == {"model_only", "regex", "direction", "probe", "neural"}
    assert doc["end_to_end_s"]["model_only"]["model"]["n"] == 12
    for name, ls in doc["layerskip"].items():
        assert ls["total_time_s"] > 0 and ls["time_per_answer_s"] > 0 and 0 <= ls["expert_call_rate"] <= 1, name
        assert ls["model_tokens"] == 0 or (ls["time_per_token_s"] > 0 and ls["tokens_per_s"] > 0), name
    assert doc["layerskip"]["regex"]["expert_call_rate"] > 0  # the symbol prompts went to the calculator
    assert len(doc["per_prompt"]) == 12 and isinstance(doc["ok"], bool) and doc["ok"] == result["ok"]


def test_causal_sweeps_on_a_tiny_model(tiny_dir, tmp_path):
    """benchmarks/causal_sweeps.py in-process on the tiny Llama (--quick): every contender timed, the ratios
    positive, the pairs of one token length (no wall-clock threshold)."""
    import causal_sweeps

    out = tmp_path / "causal.json"
    result = causal_sweeps.main(["--model", str(tiny_dir), "--quick", "--threads", "1", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(result))
    assert set(doc["median_s"]) == {"patch_sweep", "two_forwards", "steer_sweep", "steer_plain"}
    assert doc["settings"]["pairs"] == 12 and doc["settings"]["steer_layers"] == [0, 1, 2, 3]
    assert all(v > 0 for v in doc["ratios"].values())


def test_explorer_steering_on_a_tiny_model(tiny_dir, tmp_path):
    """benchmarks/explorer_steering.py in-process on the tiny Llama (--quick): every slider round timed, each change
    exactly one forward pass (no generation), the greedy answers timed apart, the JSON written (no wall-clock
    threshold)."""
    import explorer_steering

    out = tmp_path / "steering.json"
    result = explorer_steering.main(["--model", str(tiny_dir), "--quick", "--max-new-tokens", "2", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["reps"] == 3 and len(doc["slider_s"]) == len(doc["generate_s"]) == len(doc["forward_s"]) == 3
    assert doc["slider_over_forward"] > 0
    assert doc["passes_per_slider_change"] == [1] * 5  # 2 warm-up rounds + 3 timed, one steered pass each
    assert doc["generations"] == 1 + 5  # the unsteered answer once, then one steered answer per round
    assert doc["slider_median_ms"] > 0 and doc["generate_median_ms"] > 0 and doc["direction"] == "unembed:multiply"
    assert isinstance(doc["ok"], bool) and doc["ok"] == result["ok"]


@pytest.mark.slow
def test_tuned_lens_benchmark_on_a_tiny_model_reports_its_block(tiny_dir, tmp_path):
    """benchmarks/tuned_lens.py in-process on the tiny Llama with --report into a copy of the docs: the record's
    block renders in readouts.md, every KL is finite and the zero-init tuned lens starts from the logit lens's KL."""
    import shutil

    import tuned_lens

    root = tmp_path / "repo"
    (root / "docs" / "records").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "readouts.md", root / "docs" / "readouts.md")
    args = ["--model", str(tiny_dir), "--layers", "0,2", "--tokens", "64", "--cache-tokens", "80",
            "--heldout-tokens", "32", "--batch-size", "16", "--init", "zero", "--report", "--root", str(root)]  # fmt: skip
    result = tuned_lens.main(args)
    record = json.loads((root / "docs" / "records" / "tuned_lens.json").read_text())
    assert record["layers"] == [0, 2] and set(record["read_positions_per_s"]) == {"logit", "shortcut", "tuned"}
    assert record["command"] == "python benchmarks/tuned_lens.py " + " ".join(args)
    assert set(record["tuned"]) == {"zero@16", "zero@64"} and len(result["logit"]) == 2
    page = (root / "docs" / "readouts.md").read_text()
    block = page.split("<!-- tuned_lens:start -->\n")[1].split("<!-- tuned_lens:end -->")[0]
    assert "| tuned zero@64 |" in block and f"git commit `{record['git_commit']}`" in block

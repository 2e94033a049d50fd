"""Training over ranks (workbench/training/distributed.py), checked against one process: two real gloo processes on
the CPU with per-rank batch b give the per-step losses and the adapter of one process with batch 2b, under DDP and
under FSDP2, with the dual-reward loss on; a rank that dies stops the other with one line and ``--resume`` finishes
the run with the same numbers. Also the parts that need no second process: ``--fsdp`` alone, the memory refusal, the
loss shares that make uneven slices add up to the global mean, and the dtype records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, cli
from safetensors.torch import load_file

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.errors import WorkbenchError
from workbench.training.config import build_config
from workbench.training.distributed import Ranks
from workbench.training.loop import train
from workbench.training.losses import Shares, blank, encode_records, sft_batch, sft_losses

TOL = 1e-5
STEPS, PER_RANK = 4, 2
LOSS_KEYS = ("loss", "answer_loss", "classifier_loss", "grad_norm")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("dist")
    write_jsonl(root / "train.jsonl", generate_arithmetic(48, 42))
    write_jsonl(root / "eval.jsonl", generate_arithmetic(8, 7))
    return root


def sft_args(tiny_dir, files: Path, out: Path, batch: int, *extra) -> list[str]:
    return [
        *("train", "sft", "--model", tiny_dir, "--data", files / "train.jsonl", "--eval-data", files / "eval.jsonl"),
        *("--output", out, "--max-steps", STEPS, "--batch-size", batch, "--lr", "0.01", "--lora-rank", 4),
        *("--intermediate-layer", "auto", "--save-every", 2, "--no-progress", *extra),
    ]


@pytest.fixture(scope="module")
def reference(files, tiny_dir):
    """One process, batch 2b: what two ranks of batch b must reproduce."""
    out = files / "one-process"
    values = dict(model=str(tiny_dir), data=str(files / "train.jsonl"), eval_data=str(files / "eval.jsonl"))
    values.update(output=str(out), max_steps=STEPS, batch_size=2 * PER_RANK, learning_rate=0.01, lora_rank=4)
    values.update(intermediate_loss={"enabled": True, "layer": "auto"}, save_every=2)
    train(build_config(values), device="cpu", progress=False)
    return out


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "WORKBENCH_DIST_TIMEOUT": "120", "PYTHONWARNINGS": "ignore"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m workbench.cli ARGS...` on gloo (the CPU)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command = [*launcher, "--master_port", str(free_port()), "-m", "workbench.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env())


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def assert_same_training(reference: Path, out: Path) -> None:
    ref, got = log_rows(reference), log_rows(out)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1)) == [r["step"] for r in ref]
    dloss = max(abs(a[k] - b[k]) for a, b in zip(ref, got) for k in LOSS_KEYS)
    assert dloss < TOL, dloss
    assert all(r["classifier_loss"] > 0 for r in got)  # the dual-reward loss was on
    want, have = load_file(reference / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert set(want) == set(have)
    dweight = max(float((want[k] - have[k]).abs().max()) for k in want)
    moved = max(float(v.abs().max()) for k, v in want.items() if "lora_B" in k)
    assert dweight < TOL and moved > 100 * TOL, (dweight, moved)  # equal, and the adapter did train
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 2 * PER_RANK
    assert config["batch_size"] == PER_RANK and config["lora_dtype"] == "float32"
    assert config["dtype"] == "float32" and config["as_written"]["dtype"] == "auto"
    after_ref, after = (json.loads((d / "metrics.json").read_text())["after"] for d in (reference, out))
    assert abs(after_ref["answer_loss"] - after["answer_loss"]) < TOL


# ---------------------------------------------------------------- two real processes


@pytest.mark.slow
def test_fsdp2_two_ranks_equal_one_process(files, tiny_dir, reference):
    out = files / "fsdp2"
    proc = torchrun(*sft_args(tiny_dir, files, out, PER_RANK, "--fsdp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_training(reference, out)
    assert json.loads((out / "config.json").read_text())["fsdp"] is True


@pytest.mark.slow
def test_ddp_rank_death_stops_the_other_in_one_line_and_resume_finishes_equal(files, tiny_dir, reference):
    """Rank 1 dies right after the step-2 checkpoint (its own os._exit, so the moment is exact); rank 0 must stop with
    one line, not hang; `--resume` on two ranks then finishes the run with the one-process numbers."""
    out = files / "ddp"
    args = [str(a) for a in sft_args(tiny_dir, files, out, PER_RANK)]
    dies = (
        "import os, sys\n"
        "import workbench.training.loop as loop\n"
        "real = loop.save_checkpoint\n"
        "def save_then_die(*a, **k):\n"
        "    real(*a, **k)\n"
        "    if os.environ['RANK'] == '1' and a[3] == 2:\n"
        "        os._exit(7)\n"
        "loop.save_checkpoint = save_then_die\n"
        "from workbench.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    port, procs = free_port(), []
    for rank in (0, 1):
        env = {**child_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, "-c", dies, *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    (_, err0), (_, _) = (p.communicate(timeout=300) for p in procs)  # a hang would end here, as a failure
    assert procs[1].returncode == 7
    assert_one_line_error(procs[0].returncode, err0, "rank 0 of 2", "--resume")
    assert [r["step"] for r in log_rows(out)] == [1, 2] and (out / "checkpoints" / "step-000002").is_dir()

    proc = torchrun(*args, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_training(reference, out)


# ---------------------------------------------------------------- one process


def test_fsdp_without_ranks_is_one_line(tiny_dir, files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, _, err = cli(capsys, *sft_args(tiny_dir, files, tmp_path / "run", 2, "--fsdp"))
    assert_one_line_error(code, err, "--fsdp", "torchrun --nproc_per_node")
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_run_too_big_is_refused_before_loading(tiny_dir, files, tmp_path, capsys, monkeypatch):
    import workbench.core.memory as memory
    import workbench.training.loop as loop

    monkeypatch.setattr(memory, "free_bytes", lambda device: 10_000)  # less than the tiny model's ~0.5 MB step
    monkeypatch.setattr(loop, "load_hf", lambda *a, **k: pytest.fail("loaded the model before refusing"))
    code, _, err = cli(capsys, *sft_args(tiny_dir, files, tmp_path / "run", 2, "--gradient-checkpointing"))
    assert_one_line_error(code, err, "training step of 2 x", "GiB", "--dtype bfloat16", "--fsdp", "--batch-size")


def test_trainable_estimate_is_the_lora_count(tiny_dir, files):
    from workbench.core.models import model_config
    from workbench.training.loop import estimated_trainable

    cfg = build_config({"model": str(tiny_dir), "lora_rank": 4, "lora_targets": "v_proj,o_proj"})
    # d_model 32, 2 KV heads of 8: v_proj 32 -> 16, o_proj 32 -> 32; 4 layers, layer 0 frozen
    assert estimated_trainable(cfg, model_config(str(tiny_dir)), [0]) == 3 * 4 * ((32 + 16) + (32 + 32))


def test_uneven_slices_add_up_to_the_global_mean(tiny_lm):
    """Each rank's sum / share, averaged over ranks (what DDP and FSDP2 do to gradients), is the one-process mean,
    for slices of unequal size and for a rank left with nothing (it runs a blank example)."""
    ids = {"multiply": 5, "add": 6, "subtract": 7, "divide": 8}
    examples = encode_records(tiny_lm, generate_arithmetic(3, 5), True, target_ids=ids)
    with torch.no_grad():
        whole = sft_losses(tiny_lm, sft_batch(examples, 1, "cpu"), 1, 0.4)
    for world in (2, 4):  # 2 + 1 examples; 1 + 1 + 1 + an empty rank
        shares = Shares.of(examples, world)
        per_rank = []
        for rank in range(world):
            mine = [examples[i] for i in Ranks(rank, world).my_slice(np.arange(3))] or [blank(examples[0])]
            per_rank.append(sft_losses(tiny_lm, sft_batch(mine, 1, "cpu"), 1, 0.4, shares=shares))
        for key in ("loss", "answer_loss", "classifier_loss"):
            mean = torch.stack([r[key].detach() for r in per_rank]).mean()
            assert float(mean) == pytest.approx(float(whole[key]), abs=1e-6), (world, key)


@pytest.mark.slow
def test_bfloat16_base_keeps_lora_fp32_and_records_both(tiny_dir, files, tmp_path):
    out = tmp_path / "bf16"
    values = dict(model=str(tiny_dir), data=str(files / "train.jsonl"), eval_data=str(files / "eval.jsonl"))
    values.update(output=str(out), max_steps=2, batch_size=2, lora_rank=4, dtype="bfloat16")
    metrics = train(build_config(values), device="cpu", progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["lora_dtype"] == "float32"
    assert metrics["config"]["memory_estimate"]["weights"] > 0
    assert all(v.dtype == torch.float32 for v in load_file(out / "adapter_model.safetensors").values())


def test_float16_on_the_cpu_is_refused(tiny_dir, files, tmp_path):
    values = dict(model=str(tiny_dir), data=str(files / "train.jsonl"), output=str(tmp_path / "x"), dtype="float16")
    with pytest.raises(WorkbenchError, match="float16 on the CPU"):
        train(build_config(values), device="cpu", progress=False)

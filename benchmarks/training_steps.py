"""Training step costs on the embedded model, measured side by side in one process.

  A  plain peft SFT step: HF forward through the PeftModel, answer CE, backward (no bridge, no hooks)
  B  dual-reward step (phase 1): bridge forward with a hook at layer 16, w*lens CE + (1-w)*answer CE, backward
  C  routing step (phase 2): layers 0-16 frozen (LoRA included), answers only, backward

Targets: B / A <= 1.15 and C / B <= 0.75. Then the peak resident memory of a short phase-1 run (a child process).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import _bench

SCRIPT_PHASE1 = """
import sys
from workbench.training.config import build_config
from workbench.training.loop import train
train(build_config({"model": "default", "data": sys.argv[1], "output": sys.argv[2], "max_steps": int(sys.argv[3]),
                    "batch_size": 1, "learning_rate": 1e-3, "eval_samples": 32,
                    "intermediate_loss": {"enabled": True, "layer": 16, "weight": 0.4}}), progress=False)
"""


def main() -> None:
    args = _bench.parser(__doc__.splitlines()[0], reps=10, quick_reps=4).parse_args()
    import torch

    from workbench.core.arithmetic import generate_arithmetic
    from workbench.core.data import write_jsonl
    from workbench.core.models import default_device
    from workbench.training.config import build_config
    from workbench.training.loop import prepare_model, trainable_parameters
    from workbench.training.losses import answer_loss, encode_records, sft_batch, sft_losses

    device = args.device or default_device()
    timed = _bench.make_timer(device)
    phase1 = prepare_model(build_config({"model": "default"}), device)
    phase2 = prepare_model(build_config({"model": "default", "freeze_layers": "0-16", "mask_prompt": True}), device)
    records = generate_arithmetic(8, 3)
    targets = {"multiply": 48859, "add": 2104, "subtract": 4103, "divide": 49099}
    batch = sft_batch(encode_records(phase1, records, False, target_ids=targets), phase1.tokenizer.pad_token_id, device)
    masked = sft_batch(encode_records(phase2, records, True), phase2.tokenizer.pad_token_id, device)
    opt1 = torch.optim.AdamW(trainable_parameters(phase1).values(), lr=1e-5)
    opt2 = torch.optim.AdamW(trainable_parameters(phase2).values(), lr=1e-5)
    phase1.bridge.train()
    phase2.bridge.train()

    def step(loss, opt):
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    contenders = {
        "A plain peft SFT": lambda: step(
            answer_loss(phase1.peft_model(input_ids=batch.input_ids).logits, batch.labels), opt1
        ),
        "B dual-reward": lambda: step(sft_losses(phase1, batch, 16, 0.4)["loss"], opt1),
        "C routing (0-16 frozen)": lambda: step(sft_losses(phase2, masked)["loss"], opt2),
    }
    print(_bench.machine_line(device))
    print(f"batch: {batch.input_ids.shape[0]} examples x {batch.input_ids.shape[1]} tokens; {_bench.load_average()}")
    times = _bench.interleaved(contenders, _bench.n_reps(args), warmup=2, timed=timed)
    _bench.print_times(times)
    a, b, c = (times[k] for k in contenders)
    b_over_a = _bench.median(_bench.paired_ratios(b, a))
    c_over_b = _bench.median(_bench.paired_ratios(c, b))
    ok1, ok2 = b_over_a <= 1.15, c_over_b <= 0.75
    print(_bench.verdict("dual-reward / plain peft step", b_over_a, "<= 1.15", ok1))
    print(_bench.verdict("phase-2 / phase-1 step", c_over_b, "<= 0.75", ok2))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.jsonl"
        write_jsonl(data, generate_arithmetic(64, 42))
        steps = 5 if args.quick else 20
        subprocess.run([sys.executable, "-c", SCRIPT_PHASE1, str(data), str(Path(tmp) / "out"), str(steps)], check=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        log = [json.loads(x) for x in (Path(tmp) / "out" / "train_log.jsonl").read_text().splitlines()]
    print(f"peak resident memory of a {steps}-step phase-1 run (model load, training, evaluation): {peak_mb:.0f} MB")
    print(f"median seconds per phase-1 step in that run: {_bench.median([r['seconds'] for r in log]):.3f}")
    _bench.finish(
        f"summary: B/A {b_over_a:.3f}, C/B {c_over_b:.3f}, phase-1 peak RSS {peak_mb:.0f} MB", ok1 and ok2, args.check
    )


if __name__ == "__main__":
    main()

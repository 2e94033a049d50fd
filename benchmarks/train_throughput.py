"""Training throughput and peak memory of one dual-reward LoRA step: the bridge vs plain HF (eager and SDPA), by length.

Contenders, at each sequence length, one batch of random token ids (every token carries answer loss; the lens
target sits at the middle token), LoRA r=16 (alpha 32) on v_proj,o_proj, AdamW (lr 1e-5) step included:

  bridge     the workbench's dual-reward step (workbench.training.losses.sft_losses): bridge forward with a hook at
             the classifier layer, 0.4 * lens CE + 0.6 * answer CE, backward, optimizer step. The bridge forces
             eager attention and re-implements it (softmax in fp32).
  hf_eager   the same loss on a plain peft model that was never booted into a bridge, attn_implementation="eager":
             the lens CE from HF hidden_states[layer + 1] through the model's final norm and lm_head (the same math)
  hf_sdpa    the same model and loss with attn_implementation="sdpa" (switched per call)

Timing: interleaved rounds in one process (order flips every round), medians, tokens/s = batch x length / median.
Memory: on CUDA, torch.cuda.max_memory_allocated during one step minus memory_allocated before it (reset between
contenders), in the timing process. On the CPU, each contender runs in a fresh subprocess that loads only its own
model: the resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs before each length; else
getrusage ru_maxrss with lengths ascending) minus the RSS after loading. Both are the step's own peak on top of
the resident weights; the weights, LoRA and AdamW state are listed apart (the child takes
one unmeasured 8-token step before its baseline, so that the memory-mapped weights are resident). On the CPU,
lengths above 1024 skip the warm-up round (a step takes tens of seconds; the shorter lengths warmed the kernels). The memory estimate of
workbench.core.memory (activations + LoRA gradients and AdamW) is printed beside the bridge's.

Target (--check): bridge / hf_eager <= 1.15 at every length (what the bridge adds beyond eager attention);
bridge / hf_sdpa is what eager attention costs on top, reported only.

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--check] [--reps N] [--device cpu|cuda]
        [--model default|DIR|random:llama-3.2-1b|random:llama-3.1-8b] [--dtype auto|float32|bfloat16]
        [--lengths 16,512,2048] [--batch 1] [--json OUT] [--no-memory]
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import _bench
import gpu_models

TARGET = 1.15
CONTENDERS = ("bridge", "hf_eager", "hf_sdpa")
LORA_RANK, LORA_TARGETS, WEIGHT, LR = 16, ["v_proj", "o_proj"], 0.4, 1e-5
MIB = 1024**2
DEFAULT_LENGTHS, QUICK_LENGTHS = "16,512,2048", "16,256"
LONG_CPU = 1024  # on the CPU, lengths above this skip the warm-up round


# ---------------------------------------------------------------- models and steps


@dataclass
class Contender:
    name: str
    loss: object  # callable(batch) -> loss tensor (the forward and the loss)
    model: object  # the module whose parameters are resident
    optimizer: object

    def step(self, batch) -> float:
        """One training step: forward + loss, backward, AdamW step, gradients dropped."""
        loss = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def load_base(spec: str, dtype, device: str):
    """(HF model on device, tokenizer, label) for the embedded model, a local folder or a random:... shape."""
    from workbench.core.models import load_hf

    if gpu_models.is_random(spec):
        label = spec.replace(":", "-").replace("@", "-").replace("=", "")
        return gpu_models.build_random(spec, dtype, device), gpu_models.byte_tokenizer(), label
    model, tokenizer, source = load_hf(spec, dtype)
    return model.to(device), tokenizer, source.model_id


def with_lora(model):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(
        r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, lora)


def trainable(module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


def make_contenders(spec: str, dtype, device: str, layer: int, names=CONTENDERS) -> dict[str, Contender]:
    """Load what the named contenders need: one booted model for the bridge, one plain peft model for both HF ones."""
    import torch
    import torch.nn.functional as F

    from workbench.core.model_sources import ModelSource
    from workbench.core.models import LoadedModel, boot_bridge
    from workbench.training.losses import IGNORE, answer_loss, sft_losses

    out = {}
    if "bridge" in names:
        hf, tokenizer, label = load_base(spec, dtype, device)
        peft_model = with_lora(hf)
        base = peft_model.get_base_model()
        bridge = boot_bridge(base, tokenizer, label, device, dtype)
        lm = LoadedModel(base, tokenizer, bridge, ModelSource("bench", spec, label), device, peft_model)
        bridge.train()
        opt = torch.optim.AdamW(trainable(base), lr=LR)
        out["bridge"] = Contender("bridge", lambda b: sft_losses(lm, b, layer, WEIGHT)["loss"], base, opt)
    hf_names = [n for n in names if n.startswith("hf_")]
    if hf_names:
        hf, _, _ = load_base(spec, dtype, device)
        peft_model = with_lora(hf)
        base = peft_model.get_base_model()
        peft_model.train()
        opt = torch.optim.AdamW(trainable(base), lr=LR)

        def hf_loss(b, attn: str):
            base.set_attn_implementation(attn)
            res = peft_model(input_ids=b.input_ids, output_hidden_states=True)
            ans = answer_loss(res.logits, b.labels)
            rows = torch.arange(b.input_ids.shape[0], device=b.input_ids.device)
            lens = base.lm_head(base.model.norm(res.hidden_states[layer + 1][rows, b.last_prompt]))
            cls = F.cross_entropy(lens.float(), b.targets, ignore_index=IGNORE)
            return WEIGHT * cls + (1 - WEIGHT) * ans

        for name in hf_names:
            attn = name.removeprefix("hf_")
            out[name] = Contender(name, lambda b, attn=attn: hf_loss(b, attn), base, opt)
    return out


def make_batch(vocab: int, batch: int, length: int, device: str, seed: int = 0):
    """Random token ids (seeded), answer loss on every token, the lens target at the middle token."""
    import torch

    from workbench.training.losses import SFTBatch

    gen = torch.Generator().manual_seed(seed + length)
    ids = torch.randint(3, vocab, (batch, length), generator=gen)
    return SFTBatch(
        ids.to(device),
        ids.clone().to(device),
        torch.full((batch,), length, device=device),
        torch.full((batch,), max(0, length // 2 - 1), device=device),
        torch.randint(3, vocab, (batch,), generator=gen).to(device),
    )


def resident_bytes(c: Contender) -> dict:
    weights = sum(p.numel() * p.element_size() for p in c.model.parameters())
    lora = sum(p.numel() * p.element_size() for p in trainable(c.model))
    adam = sum(
        t.numel() * t.element_size() for s in c.optimizer.state.values() for t in s.values() if hasattr(t, "numel")
    )
    return {"weights": weights, "lora": lora, "adam": adam}


def vocab_of(spec: str) -> int:
    if gpu_models.is_random(spec):
        return int(gpu_models.llama_config(spec).vocab_size)
    from workbench.core.models import model_config

    return int(model_config(spec).vocab_size)


def n_layers_of(spec: str) -> int:
    if gpu_models.is_random(spec):
        return int(gpu_models.llama_config(spec).num_hidden_layers)
    from workbench.core.models import model_config

    return int(model_config(spec).num_hidden_layers)


# ---------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_hwm() -> bool:
    """Reset the resident-set high-water mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def rss_mib() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hwm_mib() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CPU_METHOD_HWM = "fresh subprocess per contender; VmHWM (reset via /proc/self/clear_refs) minus RSS after load"
CPU_METHOD_MAXRSS = "fresh subprocess per contender; getrusage ru_maxrss minus RSS after load (lengths ascending)"
CUDA_METHOD = "torch.cuda.max_memory_allocated during one step minus memory_allocated before it (reset per contender)"


def child_main(args) -> None:
    """One contender in a fresh process: load it, then one step per length; one JSON line per length on stdout."""
    import torch

    from workbench.core.devices import resolve_dtype

    torch.set_num_threads(int(args.threads))
    dtype = resolve_dtype(args.dtype, args.device)
    layer = layer_for(args)
    contender = make_contenders(args.model, dtype, args.device, layer, names=(args._child,))[args._child]
    vocab = vocab_of(args.model)
    # One unmeasured step at 8 tokens first: it pages in the weights (safetensors are memory-mapped, so RSS after
    # loading lacks them) and creates the AdamW state; the baseline is the RSS after it.
    contender.step(make_batch(vocab, args.batch, 8, args.device))
    baseline = rss_mib()
    can_reset = reset_hwm()
    for length in sorted(parse_lengths(args.lengths)):
        batch = make_batch(vocab, args.batch, length, args.device)
        if can_reset:
            reset_hwm()
        contender.step(batch)
        peak = hwm_mib()
        row = {"contender": args._child, "length": length, "baseline_mib": baseline, "peak_mib": peak}
        row["step_peak_mib"] = max(0.0, peak - baseline)
        row["method"] = CPU_METHOD_HWM if can_reset else CPU_METHOD_MAXRSS
        print("CHILD " + json.dumps(row), flush=True)


def cpu_memory(args, names) -> dict[tuple[str, int], float]:
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--_child", name, "--model", args.model, "--dtype", args.dtype]
        cmd += ["--device", "cpu", "--lengths", args.lengths, "--batch", str(args.batch), "--layer", str(args.layer)]
        cmd += ["--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"memory child {name} failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
            continue
        for line in res.stdout.splitlines():
            if line.startswith("CHILD "):
                row = json.loads(line[6:])
                out[(name, row["length"])] = row
    return out


def cuda_memory(contenders: dict[str, Contender], batch) -> dict[str, float]:
    import torch

    out = {}
    for name, c in contenders.items():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        c.step(batch)
        torch.cuda.synchronize()
        out[name] = (torch.cuda.max_memory_allocated() - before) / MIB
    return out


def estimate_mib(spec: str, dtype, batch: int, length: int, n_lora: int) -> float | None:
    """workbench.core.memory's estimate of a training step's activations + LoRA gradients/AdamW (no weights)."""
    from workbench.core import memory

    try:
        config = gpu_models.llama_config(spec) if gpu_models.is_random(spec) else None
        if config is None:
            from workbench.core.models import model_config

            config = model_config(spec)
        est = memory.estimate(memory.Shape.of(config), dtype, batch, length, training=True, trainable_params=n_lora)
    except Exception:  # an estimate is informational
        return None
    return (est.activations + est.gradients_and_optimizer) / MIB


# ---------------------------------------------------------------- main


def parse_lengths(text: str) -> list[int]:
    lengths = [int(x) for x in str(text).split(",") if x.strip()]
    if not lengths or min(lengths) < 2:
        raise SystemExit("--lengths: comma-separated sequence lengths, each >= 2")
    return lengths


def layer_for(args) -> int:
    from workbench.core.guide import classifier_layer

    return classifier_layer(n_layers_of(args.model)) if args.layer == "auto" else int(args.layer)


def format_table(result: dict) -> str:
    """The results as a Markdown table (also what docs/performance.md and gpu_check.sh show)."""
    lines = [
        "| length | contender | median s | tokens/s | step peak MiB | bridge / this |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    ratios = {r["length"]: r for r in result["ratios"]}
    for row in result["results"]:
        mem = row.get("step_peak_mib")
        r = ratios.get(row["length"], {})
        ratio = {"hf_eager": r.get("bridge_over_hf_eager"), "hf_sdpa": r.get("bridge_over_hf_sdpa")}.get(
            row["contender"]
        )
        lines.append(
            f"| {row['length']} | {row['contender']} | {row['median_s']:.4f} | {row['tokens_per_s']:.0f} | "
            f"{'-' if mem is None else f'{mem:.0f}'} | {'-' if ratio is None else f'{ratio:.3f}'} |"
        )
    return "\n".join(lines)


def summary_line(result: dict) -> str:
    last = result["ratios"][-1]
    per = {r["contender"]: r for r in result["results"] if r["length"] == last["length"]}
    mem = {k: v.get("step_peak_mib") for k, v in per.items()}
    mem_text = ", ".join(f"{k} {v:.0f}" for k, v in mem.items() if v is not None) or "not measured"
    return (
        f"SUMMARY train_throughput: {result['model']} {result['dtype']} {result['device']}, at length "
        f"{last['length']}: bridge {per['bridge']['tokens_per_s']:.0f} tokens/s, bridge/hf_eager "
        f"{last['bridge_over_hf_eager']:.3f}, bridge/hf_sdpa {last['bridge_over_hf_sdpa']:.3f}; step peak MiB "
        f"{mem_text}; target bridge/hf_eager <= {TARGET} at every length: {'MET' if result['ok'] else 'MISSED'}"
    )


def build_parser():
    p = _bench.parser(__doc__.splitlines()[0], reps=3, quick_reps=2)
    p.add_argument(
        "--model", default="default", help="default | local HF dir | random:llama-3.2-1b | random:llama-3.1-8b"
    )
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 (auto: bf16 on CUDA, fp32 on the CPU)")
    p.add_argument(
        "--lengths", default=None, help=f"comma-separated (default {DEFAULT_LENGTHS}; --quick {QUICK_LENGTHS})"
    )
    p.add_argument("--batch", type=int, default=1, help="sequences per step (default 1)")
    p.add_argument("--layer", default="auto", help="the lens-loss layer (default: the guide's int(0.55 n_layers))")
    p.add_argument("--json", default=None, help="also write the results here as JSON")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--threads", default=None, help="torch threads (default: OMP_NUM_THREADS or torch's default)")
    p.add_argument(
        "--report", default=None, help="keep the gpu_check.sh results in this folder as docs/records/gpu_check.json"
    )
    p.add_argument("--root", default=".", help="with --report: the repository whose docs get the record and its block")
    p.add_argument("--_child", default=None, help=argparse_hidden())
    return p


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.report:
        return report(Path(args.report), Path(args.root))
    import torch

    from workbench.core.devices import dtype_name, resolve_device, resolve_dtype
    from workbench.core.results import git_commit

    args.device = resolve_device(args.device)
    args.lengths = args.lengths or (QUICK_LENGTHS if args.quick else DEFAULT_LENGTHS)
    args.threads = args.threads or os.environ.get("OMP_NUM_THREADS") or str(torch.get_num_threads())
    if args._child:
        child_main(args)
        return {}
    torch.set_num_threads(int(args.threads))
    dtype = resolve_dtype(args.dtype, args.device)
    lengths = parse_lengths(args.lengths)
    layer = layer_for(args)
    reps = _bench.n_reps(args)
    cuda = args.device.startswith("cuda")
    timed = _bench.make_timer(args.device)
    contenders = make_contenders(args.model, dtype, args.device, layer)
    vocab = vocab_of(args.model)
    n_lora = resident_bytes(contenders["bridge"])["lora"] // 4  # LoRA is fp32 (peft keeps it so on a bf16 base)
    print(_bench.machine_line(args.device))
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if cuda else None
    if gpu:
        print(f"GPU: {gpu}")
    print(
        f"model {args.model} ({dtype_name(dtype)}), batch {args.batch}, lens loss at layer {layer} (weight {WEIGHT}), "
        f"LoRA r={LORA_RANK} on {','.join(LORA_TARGETS)} ({n_lora:,} trainable parameters), AdamW; "
        f"{reps} interleaved rounds after 1 warm-up round; {_bench.load_average()}"
    )
    # Sanity: before any step (same weights, LoRA B zero) all three compute the same loss on the same batch.
    with torch.no_grad():
        first = make_batch(vocab, args.batch, lengths[0], args.device)
        losses = {name: float(c.loss(first)) for name, c in contenders.items()}
    spread = max(losses.values()) - min(losses.values())
    print(f"losses before training (identical weights): {', '.join(f'{k} {v:.5f}' for k, v in losses.items())}")
    print(f"(spread {spread:.2e}; eager vs SDPA kernels reorder float ops)")
    results, ratios, ok = [], [], True
    for length in lengths:
        batch = make_batch(vocab, args.batch, length, args.device)
        steps = {name: (lambda c=c, b=batch: c.step(b)) for name, c in contenders.items()}
        # One warm-up round, except for long sequences on the CPU: a step there takes many seconds, the shorter
        # lengths before it have warmed the kernels, and a warm-up round would cost a third of the run.
        warmup = 0 if (not cuda and length > LONG_CPU and length != lengths[0]) else 1
        times = _bench.interleaved(steps, reps, warmup=warmup, timed=timed)
        print(f"\nlength {length} ({args.batch * length} tokens per step, {warmup} warm-up round):")
        _bench.print_times(times)
        mem = cuda_memory(contenders, batch) if cuda and not args.no_memory else {}
        for name, ts in times.items():
            med = _bench.median(ts)
            row = dict(contender=name, length=length, median_s=med, min_s=min(ts), max_s=max(ts), reps=len(ts))
            row.update(tokens_per_s=args.batch * length / med, step_peak_mib=mem.get(name))
            results.append(row)
        r_eager = _bench.median(times["bridge"]) / _bench.median(times["hf_eager"])
        r_sdpa = _bench.median(times["bridge"]) / _bench.median(times["hf_sdpa"])
        ratios.append(
            dict(
                length=length,
                bridge_over_hf_eager=r_eager,
                bridge_over_hf_sdpa=r_sdpa,
                per_round_eager=_bench.median(_bench.paired_ratios(times["bridge"], times["hf_eager"])),
                per_round_sdpa=_bench.median(_bench.paired_ratios(times["bridge"], times["hf_sdpa"])),
            )
        )
        ok &= r_eager <= TARGET
        print(_bench.verdict(f"bridge / hf_eager at {length}", r_eager, f"<= {TARGET}", r_eager <= TARGET))
        print(f"bridge / hf_sdpa at {length} = {r_sdpa:.3f} (what eager attention through the bridge costs)")
    method = CUDA_METHOD if cuda else None
    res = resident_bytes(contenders["bridge"])  # after the steps: AdamW state exists now
    if not cuda and not args.no_memory:
        del contenders, steps  # the children need the RAM
        gc.collect()
        rows = cpu_memory(args, CONTENDERS)
        for row in results:
            child = rows.get((row["contender"], row["length"]))
            if child:
                row["step_peak_mib"] = child["step_peak_mib"]
                method = child["method"]
    estimates = {n: estimate_mib(args.model, dtype, args.batch, n, n_lora) for n in lengths}
    result = dict(
        model=args.model,
        dtype=dtype_name(dtype),
        device=args.device,
        gpu=gpu,
        batch=args.batch,
        layer=layer,
        lora=dict(rank=LORA_RANK, targets=LORA_TARGETS, trainable_parameters=n_lora),
        resident_mib={k: v / MIB for k, v in res.items()},
        memory_method=method,
        estimate_mib=estimates,
        reps=reps,
        threads=int(args.threads),
        torch=torch.__version__,
        load_average=_bench.load_average(),
        machine=_bench.machine_line(args.device),
        commit=(git_commit() or "unknown")[:7],
        results=results,
        ratios=ratios,
        losses_before=losses,
        ok=bool(ok),
    )
    print()
    print(format_table(result))
    if method:
        print(f"memory: {method}")
    print(
        "resident (bridge's model): weights {weights:.0f} MiB, LoRA {lora:.1f} MiB, AdamW state {adam:.1f} MiB".format(
            **result["resident_mib"]
        )
    )
    for n in lengths:
        got = next((r["step_peak_mib"] for r in results if r["length"] == n and r["contender"] == "bridge"), None)
        est = estimates[n]
        if est is not None:
            print(
                f"estimate (core/memory.py) at {n}: {est:.0f} MiB; measured bridge step peak: {'-' if got is None else f'{got:.0f}'} MiB"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    _bench.finish(summary_line(result), ok, args.check)
    return result


def report(out: Path, root: Path) -> dict:
    """The gpu_check.sh results in ``out`` as ``root``'s docs/records/gpu_check.json, and every docs block rendered
    again (`workbench publish`'s registry: the GPU section of docs/performance.md is one of its blocks)."""
    from workbench.core.results import atomic_write_text
    from workbench.experiment import gpu_report, publish

    try:  # repo-relative: the docs never name a path outside the repository
        where = out.resolve().relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        where = out.name
    record = gpu_report.gpu_record(out, where)
    atomic_write_text(root / publish.RECORDS / "gpu_check.json", json.dumps(record, indent=1) + "\n")
    publish.write_pages(root)
    print(gpu_report.page_text(record))
    print(f"SUMMARY train_throughput --report: wrote {root / publish.RECORDS / 'gpu_check.json'} and its block")
    return record


if __name__ == "__main__":
    main()

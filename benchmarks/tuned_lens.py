"""Tuned-lens training on this CPU: tokens per second of the residual cache and of training, and the held-out KL to the
model's final distribution (bits) per layer against tokens trained, beside the logit lens and the linear shortcut.

On the embedded SmolLM2-135M (``--model``), offline prose (``workbench.lenses.corpus``: the documentation shipped in
site-packages, files split into train and held-out):

  cache     residuals at every token of the train texts (``--cache-tokens`` positions) at ``--layers`` and the last
            layer: one hooked forward pass per text
  shortcut  the least-squares map of each layer onto the last, fitted on the same cache (closed form)
  tuned     one Linear(d, d) translator per layer, started at zero (the logit lens) and at the shortcut (``--init``),
            Adam with linear decay over ``--tokens`` trained tokens (batches of ``--batch-size`` cached positions,
            epoch after epoch), its held-out KL measured at 1/16, 1/4 and all of ``--tokens`` (mid-way points are
            mid-schedule)

Training costs one forward and one backward through the unembedding ([batch, d] x [d, vocab]) per layer per token, so
its time grows with the number of layers: the table gives tokens/s for the layers trained and "layer-tokens/s" (tokens
x layers / s) to scale from. The held-out KL is over ``--heldout-tokens`` positions of held-out files.

    .venv/bin/python benchmarks/tuned_lens.py [--tokens 4096] [--layers 4,10,16,22] [--cache-tokens 2048] [--init zero]
        [--report]

Reading costs one [positions, d] x [d, vocab] product per layer (and, for the shortcut and the tuned lens, one
[d, d] map first): the table's "read" column is held-out positions read per second at every layer trained, beside the
cache's tokens per second (one hooked forward). ``--report`` keeps the numbers as docs/records/tuned_lens.json and
renders its block in docs/readouts.md.

The defaults take about 3 minutes on 2 CPU cores (both inits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _bench

from workbench.core.results import git_commit


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", default="4,10,16,22", help="comma-separated layers (default: 4 of SmolLM2's 30)")
    p.add_argument("--tokens", type=int, default=4096, help="tokens trained (steps x batch size)")
    p.add_argument("--cache-tokens", type=int, default=2048, help="distinct train positions cached")
    p.add_argument("--heldout-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--init", choices=["zero", "shortcut", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true", help="keep the numbers as docs/records/tuned_lens.json")
    p.add_argument("--root", default=".", help="with --report: the repository whose docs get the record")
    return p


def read_speed(lm, readout, cache) -> float:
    """Held-out positions read per second through ``readout`` at every layer of the cache (log-softmax included)."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        for i, layer in enumerate(cache.layers):
            torch.log_softmax(readout.logits(layer, cache.resid[i]).float(), dim=-1)
    return cache.n / (time.perf_counter() - start)


def checkpoints(tokens: int, batch_size: int) -> list[int]:
    """The steps at which the held-out KL is measured: 1/16, 1/4 and all of the budget (at least one step each)."""
    steps = max(1, tokens // batch_size)
    return sorted({max(1, steps // 16), max(1, steps // 4), steps})


def format_table(result: dict) -> str:
    """One row per readout (tuned: init@tokens trained), one column per layer: KL in bits and, in brackets, its ratio
    to the logit lens's."""
    logit = result["logit"]
    rows = {"logit": logit, "shortcut": result["shortcut"], **{f"tuned {k}": v for k, v in result["tuned"].items()}}
    lines = ["| readout | " + " | ".join(f"layer {layer}" for layer in result["layers"]) + " |"]
    lines.append("|---" * (1 + len(logit)) + "|")
    for name, kls in rows.items():
        cells = [
            f"{k:.3f}" if name == "logit" else f"{k:.3f} ({k / lo if lo else float('nan'):.2f})"
            for k, lo in zip(kls, logit)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    import torch

    from workbench.core.models import load_model
    from workbench.lenses.base import LogitLens
    from workbench.lenses.corpus import offline_texts
    from workbench.lenses.shortcut import cache_residuals, fit_shortcut
    from workbench.lenses.tuned import TunedLens, kl_bits

    torch.manual_seed(args.seed)
    lm = load_model(args.model, device=args.device)
    layers = [int(x) for x in args.layers.split(",")]
    train_texts = offline_texts(seed=args.seed)
    held_texts = offline_texts(max_chars=200_000, seed=args.seed, split="heldout")
    print(_bench.machine_line(lm.device))
    print(_bench.load_average())
    print(f"model {lm.model_id}: {lm.n_layers} layers, d_model {lm.d_model}; layers trained {layers}")
    print(f"train text: {train_texts.description}")
    print(f"held-out text: {held_texts.description}")

    t0 = time.perf_counter()
    cache = cache_residuals(lm, train_texts, layers, max_tokens=args.cache_tokens, corpus=train_texts.description)
    cache_s = time.perf_counter() - t0
    held = cache_residuals(lm, held_texts, layers, max_tokens=args.heldout_tokens)
    t0 = time.perf_counter()
    shortcut = fit_shortcut(lm, cache=cache)
    shortcut_s = time.perf_counter() - t0
    base = kl_bits(lm, {"logit": LogitLens(lm), "shortcut": shortcut}, held)
    cache_mib = (cache.resid.numel() + (0 if lm.n_layers - 1 in layers else cache.final.numel())) * 4 / 2**20
    print(
        f"cache: {cache.n} positions from {cache.texts} texts in {cache_s:.1f} s = {cache.n / cache_s:.1f} tokens/s "
        f"({len(layers) + (lm.n_layers - 1 not in layers)} layers kept, {cache_mib:.0f} MiB); held-out: {held.n} "
        f"positions; shortcut fit {shortcut_s:.1f} s"
    )

    marks = checkpoints(args.tokens, args.batch_size)
    steps = marks[-1]
    tuned: dict[str, list[float]] = {}
    speed = {}
    for init in ["zero", "shortcut"] if args.init == "both" else [args.init]:
        lens = TunedLens.from_shortcut(shortcut) if init == "shortcut" else TunedLens(lm, layers)
        eval_s = 0.0

        def measure(lens, step, tokens, init=init):
            nonlocal eval_s
            if step in marks:
                t = time.perf_counter()
                tuned[f"{init}@{tokens}"] = kl_bits(lm, {"tuned": lens}, held)["tuned"]
                eval_s += time.perf_counter() - t

        t0 = time.perf_counter()
        lens.train(cache, steps, args.batch_size, args.lr, args.seed, measure)
        train_s = time.perf_counter() - t0 - eval_s
        trained = steps * args.batch_size
        speed[init] = trained / train_s
        print(
            f"tuned ({init} init): {steps} steps x {args.batch_size} = {trained} tokens in {train_s:.1f} s = "
            f"{trained / train_s:.1f} tokens/s over {len(layers)} layers = {trained * len(layers) / train_s:.0f} "
            f"layer-tokens/s (held-out measures, {eval_s:.1f} s, not counted)"
        )

    reads = {
        "logit": read_speed(lm, LogitLens(lm), held),
        "shortcut": read_speed(lm, shortcut, held),
        "tuned": read_speed(lm, lens, held),
    }
    print("read: " + ", ".join(f"{k} {v:.0f} positions/s over {len(layers)} layers" for k, v in reads.items()))
    result = {
        "command": "python benchmarks/tuned_lens.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "where": _bench.machine_line(lm.device) + "; " + _bench.load_average(),
        "git_commit": git_commit(),
        "model": lm.model_id,
        "batch_size": args.batch_size,
        "read_positions_per_s": reads,
        "layers": layers,
        "cache_tokens_per_s": cache.n / cache_s,
        "train_tokens_per_s": speed,
        "logit": base["logit"],
        "shortcut": base["shortcut"],
        "tuned": tuned,
        "heldout_tokens": held.n,
        "cache_tokens": cache.n,
    }
    print(
        f"\nheld-out KL(final || readout) in bits, mean over {held.n} positions (ratio to the logit lens); "
        "tuned: init@tokens trained"
    )
    print(format_table(result))
    worst = max(
        (run[i] / result["logit"][i] for run in tuned.values() for i in range(len(layers)) if result["logit"][i]),
        default=float("nan"),
    )
    print(
        f"SUMMARY tuned_lens: cache {result['cache_tokens_per_s']:.1f} tokens/s, training "
        + ", ".join(f"{k} init {v:.1f} tokens/s" for k, v in speed.items())
        + f" over {len(layers)} layers; worst tuned/logit KL ratio {worst:.3f}"
    )
    if args.report:
        from workbench.experiment import publish

        root = Path(args.root)
        (root / publish.RECORDS / "tuned_lens.json").write_text(json.dumps(result, indent=1) + "\n")
        publish.write_pages(root)
        print(f"SUMMARY tuned_lens --report: wrote {root / publish.RECORDS / 'tuned_lens.json'} and its block")
    return result


if __name__ == "__main__":
    main()

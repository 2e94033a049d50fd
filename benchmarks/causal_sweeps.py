"""Causal tools: a full-layer residual patching sweep against the plain forwards it needs, and a steering sweep.

Contenders, on the embedded model (SmolLM2-135M) unless ``--model``, side by side in one process, rounds interleaved
(the order reverses every round):

  patch_sweep     workbench.causal.patching.patch_sweep(lm, pairs, "resid", "last") over every layer: one batched
                  patched forward per layer with all pairs, the cached source run and the unpatched target
  two_forwards    the baseline: per layer, one plain batched forward of the sources and one of the targets
                  (lm.bridge(ids) under inference mode), 2 x n_layers forwards
  steer_sweep     workbench.causal.steering.steer_sweep over 6 layers x 7 strengths on ``--prompts`` prompts, the
                  direction and its random control per cell, lens and output read, no generation
  steer_plain     the baseline: one plain batched forward of the prompts per cell (6 x 7 x 2)

Pairs are ``a * b = `` -> ``a + b = `` (``task_pairs``), all of one token length so each forward is one batch.
Target (set by the issue before measuring): patch_sweep / two_forwards <= 3. The steering ratio is reported (no
target). Nothing asserts on wall-clock time; ``--check`` exits 1 when the patching ratio misses its target.

    .venv/bin/python benchmarks/causal_sweeps.py [--quick] [--pairs 100] [--prompts 50] [--reps 3] [--threads 2]
        [--model default] [--json PATH] [--check] [--device cpu]
"""

from __future__ import annotations

import json
import sys

import _bench

PATCH_MAX_RATIO = 3.0
STEER_LAYERS, STEER_STRENGTHS = 6, (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def build_parser():
    p = _bench.parser(__doc__.splitlines()[0], reps=3, quick_reps=1)
    p.add_argument("--model", default="default")
    p.add_argument("--pairs", type=int, default=None, help="prompt pairs patched (default 100, --quick 12)")
    p.add_argument("--prompts", type=int, default=None, help="prompts steered (default 50, --quick 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the numbers here")
    return p


def main(argv: list[str] | None = None) -> dict:
    import torch

    from workbench.causal.patching import most_common_length, patch_sweep, task_pairs
    from workbench.causal.steering import random_direction, steer_sweep
    from workbench.core.models import load_model

    args = build_parser().parse_args(argv)
    n_pairs = args.pairs or (12 if args.quick else 100)
    n_prompts = args.prompts or (8 if args.quick else 50)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lm = load_model(args.model, args.device)
        candidates, words = task_pairs("arithmetic", "multiply", "add", 6 * n_pairs)
        pairs = most_common_length(lm, candidates)[:n_pairs]
        source = torch.tensor([lm.token_ids(p.source) for p in pairs], device=lm.device)
        target = torch.tensor([lm.token_ids(p.target) for p in pairs], device=lm.device)
        n = lm.n_layers
        steer_layers = sorted({round(i * (n - 1) / (STEER_LAYERS - 1)) for i in range(STEER_LAYERS)})
        prompts = _bench.arithmetic_prompts(n_prompts)
        batch = lm.tokenize(prompts).input_ids
        direction = random_direction(lm.d_model, 1)

        def two_forwards():
            with torch.inference_mode():
                for _ in range(n):
                    lm.bridge(source)
                    lm.bridge(target)

        def steer_plain():
            with torch.inference_mode():
                for _ in range(len(steer_layers) * len(STEER_STRENGTHS) * 2):
                    lm.bridge(batch)

        contenders = {
            "patch_sweep": lambda: patch_sweep(lm, pairs, "resid", "last", class_words=words),
            "two_forwards": two_forwards,
            "steer_sweep": lambda: steer_sweep(
                lm,
                prompts,
                direction,
                steer_layers,
                list(STEER_STRENGTHS),
                ["multiply", "add"],
                lm.classifier_layer,
                generate=False,
            ),  # fmt: skip
            "steer_plain": steer_plain,
        }
        print(_bench.machine_line(lm.device))
        print(_bench.load_average())
        print(f"{len(pairs)} pairs of {source.shape[1]} tokens, {n} layers; steering {len(steer_layers)} layers x "
              f"{len(STEER_STRENGTHS)} strengths on {len(prompts)} prompts")  # fmt: skip
        times = _bench.interleaved(contenders, _bench.n_reps(args), 0, _bench.make_timer(lm.device))
    finally:
        torch.set_num_threads(threads)
    _bench.print_times(times)
    med = {k: _bench.median(v) for k, v in times.items()}
    patch_ratio = med["patch_sweep"] / med["two_forwards"]
    steer_ratio = med["steer_sweep"] / med["steer_plain"]
    ok = patch_ratio <= PATCH_MAX_RATIO
    result = {
        "settings": {
            "model": args.model,
            "pairs": len(pairs),
            "tokens": int(source.shape[1]),
            "n_layers": n,
            "steer_layers": steer_layers,
            "strengths": list(STEER_STRENGTHS),
            "prompts": len(prompts),
            "reps": _bench.n_reps(args),
            "threads": args.threads or threads,
        },  # fmt: skip
        "median_s": med,
        "ratios": {"patch_sweep_vs_two_forwards": patch_ratio, "steer_sweep_vs_plain": steer_ratio},
        "paired": {"patch": _bench.paired_ratios(times["patch_sweep"], times["two_forwards"])},
        "machine": _bench.machine_line(lm.device),
        "load": _bench.load_average(),
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    print(_bench.verdict("patch_sweep / two_forwards", patch_ratio, f"<= {PATCH_MAX_RATIO:g}", ok))
    print(f"steer_sweep / plain forwards = {steer_ratio:.3f} (reported, no target)")
    if __name__ == "__main__":
        _bench.finish(f"SUMMARY causal_sweeps patch={patch_ratio:.3f} steer={steer_ratio:.3f}", ok, args.check)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

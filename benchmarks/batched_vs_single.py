"""Batched residual capture vs one prompt at a time, side by side.

Contenders, on the same 64 arithmetic prompts ("a op b = ", drawn like the guide's generator), all 30 layers:

  batched   capture_last_token(lm, prompts, batch_size=64)   one forward pass
  single    capture_last_token(lm, prompts, batch_size=1)    64 forward passes (what the original tool does)

Target: median(single) / median(batched) >= 5 (batched at least 5x faster).

    .venv/bin/python benchmarks/batched_vs_single.py [--quick] [--check] [--reps N] [--device cpu]
"""

from __future__ import annotations

import _bench

TARGET = 5.0
N_PROMPTS = 64


def main() -> None:
    args = _bench.parser(__doc__.splitlines()[0], reps=5, quick_reps=2).parse_args()
    reps = _bench.n_reps(args)

    from workbench.core.activations import capture_last_token
    from workbench.core.models import load_model

    lm = load_model("default", device=args.device)
    timed = _bench.make_timer(lm.device)
    prompts = _bench.arithmetic_prompts(N_PROMPTS)

    def run_batched():
        return capture_last_token(lm, prompts, batch_size=N_PROMPTS)

    def run_single():
        return capture_last_token(lm, prompts, batch_size=1)

    # Sanity (not timed): padding must not change any prompt's residuals.
    a, b = run_batched(), run_single()
    max_diff = (a - b).abs().max().item()
    rel_diff = max_diff / a.abs().max().item()

    print(_bench.machine_line(lm.device))
    widths = sorted({len(lm.token_ids(p)) for p in prompts})
    print(f"{len(prompts)} prompts ({widths[0]}-{widths[-1]} tokens each), {lm.n_layers} layers, e.g. {prompts[:3]}")
    print(
        f"sanity: max |batched - single| = {max_diff:.2e} ({rel_diff:.1e} of max |residual|; float rounding of other GEMM shapes)"
    )
    print(f"{reps} interleaved rounds after 1 warm-up round; {_bench.load_average()}")
    print()

    times = _bench.interleaved({"batched": run_batched, "single": run_single}, reps=reps, warmup=1, timed=timed)
    _bench.print_times(times)
    speedup = _bench.median(times["single"]) / _bench.median(times["batched"])
    paired = _bench.paired_ratios(times["single"], times["batched"])
    per_prompt_single = _bench.median(times["single"]) / len(prompts)
    print()
    print(f"speed-up single/batched (median/median) = {speedup:.2f}x   target >= {TARGET}x")
    print(f"speed-up single/batched (median of per-round ratios) = {_bench.median(paired):.2f}x")
    print(
        f"per prompt: batched {1e3 * _bench.median(times['batched']) / len(prompts):.1f} ms, "
        f"single {1e3 * per_prompt_single:.1f} ms"
    )
    ok = speedup >= TARGET
    _bench.finish(
        f"SUMMARY batched_vs_single: {_bench.verdict('single/batched', speedup, f'>= {TARGET}', ok)}; "
        f"batched {_bench.median(times['batched']):.3f}s, single {_bench.median(times['single']):.3f}s, "
        f"{len(prompts)} prompts, {reps} reps, device {lm.device}",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()

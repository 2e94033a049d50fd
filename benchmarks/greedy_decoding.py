"""Greedy answers with HF's KV cache through the bridge vs the cache-free decoding used before the shim, side by side.

Contenders, on the embedded model, 100 held-out "a op b = " prompts (the guide's generator, seed 7), 8 new tokens:

  cache_free   greedy_answers(lm, prompts, 8, use_cache=False)   re-runs the whole sequence at every step
  cached       greedy_answers(lm, prompts, 8)                    prompt once, then one token per step (core/kv_cache.py)

Both must give every prompt the same answer text, on the base model and on a LoRA adapter when one is given (the
KV-cache shim is what makes the cached path correct: without it every step after the first attends only to itself).
Target: cache_free / cached >= 2.

    .venv/bin/python benchmarks/greedy_decoding.py [--quick] [--check] [--reps N] [--device cpu] [--adapter DIR]
"""

from __future__ import annotations

import _bench

TARGET_RATIO = 2.0


def main() -> None:
    p = _bench.parser(__doc__.splitlines()[0], reps=5, quick_reps=2)
    p.add_argument("--adapter", default=None, help="also check the answers with this LoRA adapter")
    args = p.parse_args()
    reps = _bench.n_reps(args)

    from workbench.core.generation import greedy_answers
    from workbench.core.models import load_model

    prompts = _bench.arithmetic_prompts(100, seed=7)
    same = []
    for adapter in [None, args.adapter] if args.adapter else [None]:
        lm = load_model("default", device=args.device, adapter=adapter)
        cached, free = greedy_answers(lm, prompts, 8), greedy_answers(lm, prompts, 8, use_cache=False)
        same.append(sum(a == b for a, b in zip(cached, free)))
        print(f"{'adapter ' + adapter if adapter else 'base model'}: same answer for {same[-1]}/{len(prompts)} prompts")
    lm = load_model("default", device=args.device)
    timed = _bench.make_timer(lm.device)
    times = _bench.interleaved(
        {
            "cache_free": lambda: greedy_answers(lm, prompts, 8, use_cache=False),
            "cached": lambda: greedy_answers(lm, prompts, 8),
        },
        reps=reps,
        warmup=1,
        timed=timed,
    )
    print(_bench.machine_line(lm.device))
    print(
        f"{len(prompts)} prompts, 8 new tokens, {reps} interleaved rounds after 1 warm-up round; {_bench.load_average()}"
    )
    print()
    _bench.print_times(times)
    ratio = _bench.median(times["cache_free"]) / _bench.median(times["cached"])
    per_round = _bench.median(_bench.paired_ratios(times["cache_free"], times["cached"]))
    print()
    print(
        f"cache_free / cached (median/median) = {ratio:.2f} (median of per-round ratios {per_round:.2f})   "
        f"target >= {TARGET_RATIO}"
    )
    ok = ratio >= TARGET_RATIO and all(n == len(prompts) for n in same)
    verdict = _bench.verdict("cache_free/cached", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO)
    _bench.finish(
        f"SUMMARY greedy_decoding: {verdict}; same answers {same} of {len(prompts)}; {reps} reps, device {lm.device}",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()

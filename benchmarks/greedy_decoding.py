"""Greedy answers: stopping once the first integer is complete vs decoding all max_new_tokens, side by side.

Contenders, on the embedded model, 100 held-out "a op b = " prompts (the guide's generator, seed 7), 8 new tokens:

  full         greedy_answers(lm, prompts, 8)                      every prompt decodes 8 tokens (or to EOS)
  to_integer   greedy_answers(lm, prompts, 8, until_integer=True)  what greedy_eval does: a prompt leaves its batch
                                                                   once a character follows its first integer

Both must give every prompt the same first integer (the answer greedy_eval scores); the script checks it on the base
model and on a LoRA adapter when one is given. Target: full / to_integer >= 1.5.

    .venv/bin/python benchmarks/greedy_decoding.py [--quick] [--check] [--reps N] [--device cpu] [--adapter DIR]
"""

from __future__ import annotations

import _bench

TARGET_RATIO = 1.5


def main() -> None:
    p = _bench.parser(__doc__.splitlines()[0], reps=5, quick_reps=2)
    p.add_argument("--adapter", default=None, help="also check the answers with this LoRA adapter")
    args = p.parse_args()
    reps = _bench.n_reps(args)

    from workbench.core.generation import first_integer, greedy_answers
    from workbench.core.models import load_model

    prompts = _bench.arithmetic_prompts(100, seed=7)
    same = []
    for adapter in [None, args.adapter] if args.adapter else [None]:
        lm = load_model("default", device=args.device, adapter=adapter)
        full, short = greedy_answers(lm, prompts, 8), greedy_answers(lm, prompts, 8, until_integer=True)
        same.append(sum(first_integer(a) == first_integer(b) for a, b in zip(full, short)))
        print(
            f"{'adapter ' + adapter if adapter else 'base model'}: same first integer for {same[-1]}/{len(prompts)} "
            f"prompts; mean characters decoded {sum(map(len, full)) / len(full):.1f} (full) vs "
            f"{sum(map(len, short)) / len(short):.1f} (to_integer)"
        )
    lm = load_model("default", device=args.device)
    timed = _bench.make_timer(lm.device)
    times = _bench.interleaved(
        {
            "full": lambda: greedy_answers(lm, prompts, 8),
            "to_integer": lambda: greedy_answers(lm, prompts, 8, until_integer=True),
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
    ratio = _bench.median(times["full"]) / _bench.median(times["to_integer"])
    per_round = _bench.median(_bench.paired_ratios(times["full"], times["to_integer"]))
    print()
    print(
        f"full / to_integer (median/median) = {ratio:.2f} (median of per-round ratios {per_round:.2f})   "
        f"target >= {TARGET_RATIO}"
    )
    ok = ratio >= TARGET_RATIO and all(n == len(prompts) for n in same)
    _bench.finish(
        f"SUMMARY greedy_decoding: {_bench.verdict('full/to_integer', ratio, f'>= {TARGET_RATIO}', ratio >= TARGET_RATIO)}; "
        f"same answers {same} of {len(prompts)}; {reps} reps, device {lm.device}",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()

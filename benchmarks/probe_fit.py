"""The probe fit: scikit-learn, one fit per problem, vs the batched solve of all problems at once, side by side.

Contenders, on the features `introspect classifier` probes with the guide's classes (workbench.core.guide: four
operations x four prompts, plus its four --test prompts), captured once from the embedded model at all 30 layers:

  reference   probe_layers(..., solver="reference")   scikit-learn's StandardScaler + LogisticRegression(lbfgs) per
                                                       problem: 30 layers x (4 folds x (task + 3 controls) + 1 refit)
                                                       = 510 fits (the command before this change)
  batched     probe_layers(...)                       the same 510 problems stacked and solved at once (torch, float64)

Both must give the same layer results; the script prints the largest difference in any accuracy (task, fold,
control, selectivity) and in any test probability. Target: reference / batched >= 10, accuracies within 1e-3.

    .venv/bin/python benchmarks/probe_fit.py [--quick] [--check] [--reps N] [--device cpu]
"""

from __future__ import annotations

import _bench

TARGET_RATIO = 10.0
ACCURACY_TOL = 1e-3


def max_differences(a: dict, b: dict) -> tuple[float, float]:
    keys = ("accuracy", "std", "control_accuracy", "selectivity")
    acc = max(
        max([abs(x[k] - y[k]) for k in keys] + [abs(u - v) for u, v in zip(x["fold_accuracies"], y["fold_accuracies"])])
        for x, y in zip(a["layer_results"], b["layer_results"])
    )
    prob = max(
        abs(s["probabilities"][c] - t["probabilities"][c])
        for s, t in zip(a["test_predictions"], b["test_predictions"])
        for c in s["probabilities"]
    )
    return acc, prob


def main() -> None:
    args = _bench.parser(__doc__.splitlines()[0], reps=5, quick_reps=2).parse_args()
    reps = _bench.n_reps(args)

    from workbench.core import guide
    from workbench.core.activations import capture_last_token
    from workbench.core.models import load_model
    from workbench.core.probes import probe_layers

    lm = load_model("default", device=args.device)
    prompts = [p for ps in guide.CLASSES.values() for p in ps]
    labels = [c for c, ps in guide.CLASSES.items() for _ in ps]
    tests = guide.TEST_PROMPTS
    layers = list(range(lm.n_layers))
    feats = capture_last_token(lm, prompts + tests, layers).numpy()
    x, t = feats[: len(prompts)], feats[len(prompts) :]

    def run(solver: str) -> dict:
        return probe_layers(x, labels, layers, 0, t, tests, solver=solver).to_dict()

    acc_diff, prob_diff = max_differences(run("reference"), run("batched"))
    same = run("reference")["layer_results"] == run("batched")["layer_results"]
    timed = _bench.make_timer("cpu")
    times = _bench.interleaved(
        {"reference": lambda: run("reference"), "batched": lambda: run("batched")}, reps=reps, warmup=1, timed=timed
    )
    print(_bench.machine_line(lm.device))
    print(
        f"{len(prompts)} prompts x {len(layers)} layers x d_model {x.shape[-1]}, {len(tests)} test prompts; "
        f"{reps} interleaved rounds after 1 warm-up round; {_bench.load_average()}"
    )
    print(
        f"max |difference|: accuracies {acc_diff:.2e} (layer results identical: {same}), "
        f"test probabilities {prob_diff:.2e}"
    )
    print()
    _bench.print_times(times)
    ratio = _bench.median(times["reference"]) / _bench.median(times["batched"])
    per_round = _bench.median(_bench.paired_ratios(times["reference"], times["batched"]))
    print()
    print(
        f"reference / batched (median/median) = {ratio:.1f} (median of per-round ratios {per_round:.1f})   "
        f"target >= {TARGET_RATIO:.0f}"
    )
    ok = ratio >= TARGET_RATIO and acc_diff <= ACCURACY_TOL
    _bench.finish(
        f"SUMMARY probe_fit: {_bench.verdict('reference/batched', ratio, f'>= {TARGET_RATIO:.0f}', ratio >= TARGET_RATIO)}; "
        f"max accuracy difference {acc_diff:.1e} (<= {ACCURACY_TOL}), max probability difference {prob_diff:.1e}; "
        f"{reps} reps",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()

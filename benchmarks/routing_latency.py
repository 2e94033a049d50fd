"""Virtual experts: time to the routing decision of every router vs one plain full forward, and time per answer.

Contenders, on the embedded model (SmolLM2-135M: 30 layers, classifier layer 16, so an early exit runs 17 blocks), one
prompt at a time as a server sees them, on ``--prompts`` items of the routing evaluation set (``workbench.routing.
prompts.evaluation_items``: symbol, word and mixed arithmetic and negatives, taken in turn):

  full_forward   lm.bridge(ids)                         every block and the logits (``virtual.full_forward_s``): the
                                                        baseline every decision is divided by
  model_only     virtual.model_answer(lm, prompt)       no router: the model answers every prompt (greedy, KV cache,
                                                        stopped once its first integer is complete)
  regex          virtual.route(lm, RegexRouter(), p)    the original tool's pattern on the text (no block runs)
  direction      virtual.route(lm, fitted direction)    early exit: the residual after block 16, difference of means
  probe          virtual.route(lm, fitted probe)        early exit: the residual after block 16, linear probe
  lens           virtual.route(adapted, LensRouter)     early exit on the trained dual-reward adapter (``--adapter``):
  full_forward_adapter  adapted.bridge(ids)             the lens over the class words at block 16; and its own baseline
  neural         virtual.route(lm, NeuralRouter())      the whole model writes the decision word after a few-shot
                                                        instruction (greedy, KV cache)

Direction and probe are fitted first with ``routers.fit_router(kind, lm, prompts.training_items(seed=--seed))`` (other
operands and phrasings than the evaluation set). ``virtual.route`` times the decision (``router.decide``, tokenization
included) and then the answer (the calculator when the router picked an operation, else the model) separately.

How it measures: all contenders run in ONE process, interleaved prompt by prompt. For each prompt every contender runs
once, back to back, and the order of the contenders reverses from one prompt to the next (A B C, C B A, ...), so machine
drift and "who ran first" hit every contender alike. Before the timed pass each contender runs on the first
``--warmup`` prompts untimed (warm-up excluded). Each time is ``time.perf_counter`` around one call under
``torch.inference_mode``. The script reports medians with the spread (q1-q3) over prompts, the ratios median/median,
and the median of the per-prompt ratios (both measured on the same prompt, seconds apart) as a cross-check. A sanity
pass before the warm-up counts the decoder blocks each contender enters on one prompt (forward pre-hooks on the HF
layers), so the early exit is measured, not assumed. The full forward excludes tokenization and the decisions include
it, which makes the decision / full-forward ratio conservative.

Targets (set by the issue before any measurement): probe (and lens) decision / full forward <= 0.6, neural decision /
probe (and lens) decision >= 10. Nothing asserts on wall-clock time; ``--check`` exits 1 when a ratio misses its target.

    .venv/bin/python benchmarks/routing_latency.py [--quick] [--prompts N] [--threads 2] [--adapter DIR]
        [--model default] [--seed 42] [--warmup 3] [--json PATH] [--check] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date

import _bench

EARLY_EXIT_MAX_RATIO = 0.6  # early-exit decision / full forward
NEURAL_MIN_SPEEDUP = 10.0  # neural decision / early-exit decision
EARLY_EXIT = ("direction", "probe", "lens")
ROUTER_ORDER = ("regex", "direction", "probe", "lens", "neural")
QUICK_PROMPTS, DEFAULT_PROMPTS = 12, 60


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PROMPTS} prompts instead of {DEFAULT_PROMPTS}")
    p.add_argument("--prompts", type=int, default=None, help="timed prompts (overrides --quick)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--model", default="default", help="model spec or a local HF folder (default: the embedded model)")
    p.add_argument("--adapter", default=None, help="a trained dual-reward adapter folder: adds the lens router")
    p.add_argument(
        "--routers", default="regex,direction,probe,neural", help="comma-separated, lens added with --adapter"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the fitted routers' training prompts (default 42)")
    p.add_argument("--warmup", type=int, default=3, help="untimed prompts per contender before the timed pass")
    p.add_argument("--json", default=None, help="also write the numbers here (atomic)")
    p.add_argument("--check", action="store_true", help="exit 1 when a ratio misses its target")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    return p


def pick_items(n: int) -> list:
    """``n`` evaluation items, the four kinds in turn (symbol, word, mixed, negative) while each lasts."""
    from workbench.routing import prompts

    items = prompts.evaluation_items(per_kind=max(1, -(-n // len(prompts.KINDS))))
    by_kind = {kind: [i for i in items if i.kind == kind] for kind in prompts.KINDS}
    out: list = []
    while len(out) < n and any(by_kind.values()):
        for kind in prompts.KINDS:
            if by_kind[kind] and len(out) < n:
                out.append(by_kind[kind].pop(0))
    return out


def decoder_layers(lm):
    """The HF model's decoder blocks (a ModuleList named ...layers of n_layers modules; peft-wrapped or not)."""
    import torch

    for name, module in lm.hf_model.named_modules():
        if name.split(".")[-1] == "layers" and isinstance(module, torch.nn.ModuleList) and len(module) == lm.n_layers:
            return module
    return None


def blocks_entered(lm, fn) -> int | None:
    """How many decoder blocks ``fn()`` enters (forward pre-hooks; a block the early exit stops inside counts)."""
    layers = decoder_layers(lm)
    if layers is None:
        return None
    count = [0]
    handles = [block.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1)) for block in layers]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return count[0]


def ratio_stats(num: list[float], den: list[float]) -> dict:
    """median(num) / median(den), and the median of the per-prompt ratios (measured back to back)."""
    return {
        "median_over_median": statistics.median(num) / statistics.median(den),
        "median_of_paired": statistics.median(a / b for a, b in zip(num, den)),
    }


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.1f}"


def _spread_ms(s: dict) -> str:
    return f"{_ms(s['median'])} ({_ms(s['q1'])}-{_ms(s['q3'])})" if s["n"] else "-"


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    n_prompts = args.prompts if args.prompts is not None else (QUICK_PROMPTS if args.quick else DEFAULT_PROMPTS)
    routers_wanted = [r.strip() for r in args.routers.split(",") if r.strip()]
    unknown = sorted(set(routers_wanted) - set(ROUTER_ORDER))
    if unknown:
        raise SystemExit(f"unknown router {unknown[0]!r}: choose from {', '.join(ROUTER_ORDER)}")
    if args.adapter and "lens" not in routers_wanted:
        routers_wanted.append("lens")
    if "lens" in routers_wanted and not args.adapter:
        raise SystemExit("the lens router needs --adapter DIR (a trained dual-reward adapter folder)")
    names = [r for r in ROUTER_ORDER if r in routers_wanted]

    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, n_prompts, names)
    finally:
        torch.set_num_threads(threads_before)


def _run(args, n_prompts: int, names: list[str]) -> dict:
    import torch

    from workbench.core.models import load_model
    from workbench.core.results import write_json
    from workbench.routing import prompts, routers, virtual

    load_start = _bench.load_average()
    items = pick_items(n_prompts)
    texts = [item.prompt for item in items]
    lm = load_model(args.model, device=args.device)
    adapted = load_model(args.model, device=args.device, adapter=args.adapter) if "lens" in names else None

    built, fit_s = {}, {}
    for name in names:
        start = time.perf_counter()
        if name in routers.FITTED:
            built[name] = routers.fit_router(name, lm, prompts.training_items(seed=args.seed), seed=args.seed)
        elif name == "lens":
            built[name] = routers.build_router("lens", adapted)
        elif name == "neural":
            built[name] = routers.NeuralRouter()
        else:
            built[name] = routers.RegexRouter()
        fit_s[name] = time.perf_counter() - start

    # The contenders: each takes a prompt and returns (decision seconds or None, a virtual.Routed row or None).
    def forward_on(model):
        def run(prompt):
            return virtual.full_forward_s(model, [prompt], warmup=0)[0], None

        return run

    @torch.inference_mode()
    def model_only(prompt):
        start = time.perf_counter()
        answer, tokens = virtual.model_answer(lm, prompt)
        spent = time.perf_counter() - start
        row = virtual.Routed(prompt, "model_only", "none", 1.0, 0, "model", answer, None, 0.0, spent, tokens, {})
        return None, row

    def router_on(model, router):
        def run(prompt):
            row = virtual.route(model, router, prompt)
            return row.decision_s, row

        return run

    contenders = {"full_forward": forward_on(lm), "model_only": model_only}
    for name in names:
        if name == "lens":
            contenders["lens"] = router_on(adapted, built["lens"])
            contenders["full_forward_adapter"] = forward_on(adapted)
        else:
            contenders[name] = router_on(lm, built[name])
    order = list(contenders)

    # Sanity, before the warm-up: decoder blocks each decision enters on one prompt (model_only: its answer).
    probe_prompt = texts[0]
    entered = {}
    for name, fn in contenders.items():
        model = adapted if name in ("lens", "full_forward_adapter") else lm
        if name in built:
            call = torch.inference_mode()(lambda name=name, model=model: built[name].decide(model, probe_prompt))
        else:
            call = lambda fn=fn: fn(probe_prompt)  # noqa: E731
        entered[name] = blocks_entered(model, call)

    warmup = min(args.warmup, len(texts))
    for prompt in texts[:warmup]:
        for fn in contenders.values():
            fn(prompt)

    decision: dict[str, list[float]] = {name: [] for name in order}
    rows: dict[str, list] = {name: [] for name in order}
    per_prompt = []
    for i, prompt in enumerate(texts):
        this_order = order if i % 2 == 0 else order[::-1]
        record = {"prompt": prompt, "kind": items[i].kind, "order": this_order, "decision_s": {}, "decision": {}}
        for name in this_order:
            seconds, row = contenders[name](prompt)
            if seconds is not None:
                decision[name].append(seconds)
                record["decision_s"][name] = seconds
            if row is not None:
                rows[name].append(row)
                record["decision"][name] = row.decision
                record.setdefault("answer_s", {})[name] = row.answer_s
                record.setdefault("expert", {})[name] = row.expert
        per_prompt.append(record)
    load_end = _bench.load_average()

    full = decision["full_forward"]
    decision_spread = {name: virtual.spread(ts) for name, ts in decision.items() if ts}
    early = [n for n in EARLY_EXIT if n in names]
    ratios = {"vs_full_forward": {}, "neural_vs": {}}
    for name in names:
        if name == "regex":
            continue
        base = decision["full_forward_adapter"] if name == "lens" else full
        ratios["vs_full_forward"][name] = ratio_stats(decision[name], base)
    if "lens" in names:
        ratios["vs_full_forward"]["lens_vs_base_full_forward"] = ratio_stats(decision["lens"], full)
    if "neural" in names:
        for name in early:
            ratios["neural_vs"][name] = ratio_stats(decision["neural"], decision[name])

    answer_names = ["model_only", *names]
    end_to_end, layerskip = {}, {}
    for name in answer_names:
        got = rows[name]
        totals = [r.total_s for r in got]
        end_to_end[name] = {
            "all": virtual.spread(totals),
            "calculator": virtual.spread([r.total_s for r in got if r.expert != "model"]),
            "model": virtual.spread([r.total_s for r in got if r.expert == "model"]),
        }
        scored = virtual.score(items, got)
        timing, overall = scored["timing"], scored["overall"]
        layerskip[name] = {
            "total_time_s": timing["total_time_s"],
            "model_tokens": timing["model_tokens"],
            "time_per_token_s": timing["time_per_token_s"],
            "tokens_per_s": timing["tokens_per_s"],
            "time_per_answer_s": timing["total_time_s"] / len(got),
            "expert_call_rate": overall["expert_call_rate"],
            "routing_accuracy": overall["routing_accuracy"],
            "answer_accuracy": overall["answer_accuracy"],
            "fallbacks": overall["fallbacks"],
        }
    for name in answer_names[1:]:
        layerskip[name]["speedup_vs_model_only"] = (
            layerskip["model_only"]["total_time_s"] / layerskip[name]["total_time_s"]
        )

    checks = {}
    for name in ("probe", "lens"):
        if name in ratios["vs_full_forward"]:
            checks[f"{name}_vs_full_forward"] = (
                ratios["vs_full_forward"][name]["median_over_median"] <= EARLY_EXIT_MAX_RATIO
            )
        if name in ratios["neural_vs"]:
            checks[f"neural_vs_{name}"] = ratios["neural_vs"][name]["median_over_median"] >= NEURAL_MIN_SPEEDUP
    ok = all(checks.values())

    result = {
        "benchmark": "routing_latency",
        "date": date.today().isoformat(),
        "machine": _bench.machine_line(lm.device),
        "load_average": {"start": load_start, "end": load_end},
        "settings": {
            "model": args.model,
            "model_id": lm.model_id,
            "adapter": args.adapter,
            "n_layers": lm.n_layers,
            "classifier_layer": lm.classifier_layer,
            "device": lm.device,
            "threads": torch.get_num_threads(),
            "prompts": len(items),
            "kinds": {kind: sum(i.kind == kind for i in items) for kind in prompts.KINDS},
            "warmup": warmup,
            "seed": args.seed,
            "routers": names,
            "contenders": order,
            "method": "one process; per prompt every contender once, order reversed every prompt; warm-up excluded",
        },
        "fit_s": fit_s,
        "blocks_entered": entered,
        "decision_s": decision_spread,
        "ratios": ratios,
        "targets": {"early_exit_max_ratio": EARLY_EXIT_MAX_RATIO, "neural_min_speedup": NEURAL_MIN_SPEEDUP},
        "checks": checks,
        "ok": ok,
        "end_to_end_s": end_to_end,
        "layerskip": layerskip,
        "per_prompt": per_prompt,
    }
    report(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


def report(result: dict) -> None:
    s = result["settings"]
    print(result["machine"])
    print(
        f"model {s['model_id']} ({s['n_layers']} layers, classifier layer {s['classifier_layer']}), "
        f"{s['prompts']} prompts {s['kinds']}, adapter {s['adapter']}; torch threads={s['threads']}; "
        f"{s['warmup']} warm-up prompts per contender, then per prompt every contender once, order reversed every "
        f"prompt"
    )
    print(f"start: {result['load_average']['start']}")
    print(f"end:   {result['load_average']['end']}")
    print()
    print("time to the routing decision, per prompt (ms: median (q1-q3)); decoder blocks one decision entered")
    width = max(len(n) for n in result["decision_s"])
    for name, sp in result["decision_s"].items():
        print(f"  {name:<{width}}  {_spread_ms(sp):>24}  blocks {result['blocks_entered'].get(name)}")
    print()
    r = result["ratios"]
    for name, st in r["vs_full_forward"].items():
        base = "full_forward_adapter" if name == "lens" else "full_forward"
        label = "lens / full_forward (base model)" if name == "lens_vs_base_full_forward" else f"{name} / {base}"
        target = f"   target <= {EARLY_EXIT_MAX_RATIO}" if name in ("probe", "lens") else ""
        print(
            f"  {label:<36} = {st['median_over_median']:.3f}x (median of per-prompt ratios "
            f"{st['median_of_paired']:.3f}x){target}"
        )
    for name, st in r["neural_vs"].items():
        target = f"   target >= {NEURAL_MIN_SPEEDUP:g}" if name in ("probe", "lens") else ""
        print(
            f"  {'neural / ' + name:<36} = {st['median_over_median']:.1f}x (median of per-prompt ratios "
            f"{st['median_of_paired']:.1f}x){target}"
        )
    print()
    print("time per answer end to end, decision + answer (ms: median (q1-q3)), by who answered")
    print(f"  {'router':<12} {'all':>24} {'calculator':>24} {'model':>24}")
    for name, e in result["end_to_end_s"].items():
        print(f"  {name:<12} {_spread_ms(e['all']):>24} {_spread_ms(e['calculator']):>24} {_spread_ms(e['model']):>24}")
    print()
    print("LayerSkip-style, over all prompts")
    print(
        f"  {'router':<12} {'total s':>8} {'per answer ms':>13} {'tokens':>6} {'ms/token':>8} {'tokens/s':>8} "
        f"{'expert calls':>12} {'routing acc':>11} {'answer acc':>10} {'vs model_only':>13}"
    )
    for name, ls in result["layerskip"].items():

        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        tpt = None if ls["time_per_token_s"] is None else 1e3 * ls["time_per_token_s"]
        print(
            f"  {name:<12} {ls['total_time_s']:>8.2f} {1e3 * ls['time_per_answer_s']:>13.1f} "
            f"{ls['model_tokens']:>6} {num(tpt, '.1f'):>8} {num(ls['tokens_per_s'], '.1f'):>8} "
            f"{ls['expert_call_rate']:>12.1%} {ls['routing_accuracy']:>11.1%} {num(ls['answer_accuracy'], '.1%'):>10} "
            f"{num(ls.get('speedup_vs_model_only'), '.2f'):>13}"
        )
    print()
    parts = []
    for name in ("probe", "lens"):
        st = r["vs_full_forward"].get(name)
        if st:
            value = st["median_over_median"]
            parts.append(
                _bench.verdict(
                    f"{name}/full_forward", value, f"<= {EARLY_EXIT_MAX_RATIO}", value <= EARLY_EXIT_MAX_RATIO
                )
            )
        st = r["neural_vs"].get(name)
        if st:
            value = st["median_over_median"]
            parts.append(
                _bench.verdict(f"neural/{name}", value, f">= {NEURAL_MIN_SPEEDUP:g}", value >= NEURAL_MIN_SPEEDUP)
            )
    print(
        f"SUMMARY routing_latency: {'; '.join(parts) or 'no early-exit router'}; {s['prompts']} prompts, "
        f"threads={s['threads']}, device {s['device']}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    args = build_parser().parse_args()
    outcome = main()
    sys.exit(1 if args.check and not outcome["ok"] else 0)

"""Every router on one evaluation set, side by side in one process: the router table and what it says.

``compare_routers`` fits the probe and direction routers once per seed (each seed draws its own training prompts),
reads the lens router from one trained adapter per seed, and runs regex and neural once (they have nothing to fit).
A plain full forward over the same prompts is timed in the same pass, so every latency is also a ratio.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.stats import mean_std, over_seeds
from . import prompts as route_prompts
from .routers import build_router
from .virtual import ANSWER_TOKENS, evaluate, spread

ORDER = ("regex", "direction", "probe", "lens", "neural")


def compare_routers(
    model: str = "default",
    adapters: list[str | Path] = (),
    seeds: list[int] = (42,),
    per_kind: int = 40,
    extra_negatives: list[str] = (),
    routers: list[str] = ORDER,
    warmup: int = 3,
    max_new_tokens: int = ANSWER_TOKENS,
    layer: int | None = None,
    device: str | None = "cpu",
    progress=None,
) -> dict:
    """The router comparison: one result per router and seed, the full-forward reference and every setting."""
    from ..core.models import load_model  # here: the table and findings import without the model stack

    unknown = sorted(set(routers) - set(ORDER))
    if unknown:
        raise WorkbenchError(f"unknown router {unknown[0]!r}: choose from {', '.join(ORDER)}")
    if "lens" in routers and not adapters:
        raise WorkbenchError("the lens router needs a trained dual-reward adapter: pass adapters (phase1_adapter/)")
    if "lens" in routers and len(adapters) != len(seeds):
        raise WorkbenchError(
            f"{len(adapters)} adapters for {len(seeds)} seeds: pass one phase-1 adapter per seed, in the seeds' order"
        )
    say = progress or (lambda message: None)
    items = route_prompts.evaluation_items(per_kind, list(extra_negatives))
    lm = load_model(model, device=device)
    chosen = lm.classifier_layer if layer is None else layer
    results = []
    options = dict(warmup=warmup, max_new_tokens=max_new_tokens)
    for name in (r for r in ORDER if r in routers):
        if name in ("regex", "neural"):
            say(f"router {name}")
            results.append({"seed": None, **evaluate(lm, build_router(name, lm), items, **options)})
        elif name in ("direction", "probe"):
            for seed in seeds:
                say(f"router {name}, seed {seed}")
                results.append(
                    {"seed": seed, **evaluate(lm, build_router(name, lm, layer=chosen, seed=seed), items, **options)}
                )
    if "lens" in routers:
        for seed, adapter in zip(seeds, adapters, strict=True):
            say(f"router lens, adapter {adapter}")
            adapted = load_model(model, device=device, adapter=adapter)
            router = build_router("lens", adapted, layer=chosen)
            results.append({"seed": seed, **evaluate(adapted, router, items, **options)})
            del adapted
    return {
        "settings": {
            "model": model,
            "model_id": lm.model_id,
            "layer": chosen,
            "n_layers": lm.n_layers,
            "seeds": list(seeds),
            "adapters": [str(a) for a in adapters],
            "per_kind": per_kind,
            "n_items": len(items),
            "extra_negatives": len(extra_negatives),
            "warmup": warmup,
            "max_new_tokens": max_new_tokens,
            "device": lm.device,
        },
        "full_forward_s": spread([r["full_forward_s"] for res in results for r in res["rows"]]),
        "results": results,
    }


def router_table(comparison: dict) -> list[dict]:
    """One row per router, means and stds over its seeds: routing accuracy, precision, recall, answer accuracy on
    symbol / word / mixed prompts, negatives kept from the calculator, decision latency and its ratios."""
    by_router: dict[str, list[dict]] = {}
    for result in comparison["results"]:
        by_router.setdefault(result["router"]["router"], []).append(result["metrics"])
    neural = by_router.get("neural")
    neural_s = statistics.median([m["timing"]["decision_s"]["median"] for m in neural]) if neural else None
    rows = []
    for name in (r for r in ORDER if r in by_router):
        runs = by_router[name]

        def stat(*path, runs=runs):
            values = []
            for metrics in runs:
                for key in path:
                    metrics = metrics[key]
                values.append(metrics)
            return over_seeds(values)

        decision = statistics.median([m["timing"]["decision_s"]["median"] for m in runs])
        full = statistics.median([m["timing"]["full_forward_s"]["median"] for m in runs])  # timed beside decisions
        rows.append(
            {
                "router": name,
                "seeds": len(runs),
                "routing_accuracy": stat("overall", "routing_accuracy"),
                "precision": stat("overall", "precision"),
                "recall": stat("overall", "recall"),
                "answer_accuracy": stat("overall", "answer_accuracy"),
                "answer_symbol": stat("by_kind", "symbol", "answer_accuracy"),
                "answer_word": stat("by_kind", "word", "answer_accuracy"),
                "answer_mixed": stat("by_kind", "mixed", "answer_accuracy"),
                "negatives_kept": stat("by_kind", "negative", "routing_accuracy"),
                "expert_call_rate": stat("overall", "expert_call_rate"),
                "decision_s": decision,
                "decision_vs_full_forward": decision / full,
                "neural_vs_decision": neural_s / decision if neural_s and decision else None,
                "total_s": statistics.median([m["timing"]["total_s"]["median"] for m in runs]),
            }
        )
    return rows


def _cell(stat: dict) -> str:
    return mean_std(stat)


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.3g}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}x"


def table_markdown(rows: list[dict]) -> str:
    head = (
        "| router | seeds | routing accuracy | precision | recall | answers: symbol | word | mixed | negatives kept "
        "| decision ms (median) | decision / full forward | neural / decision |\n" + "|---" * 12 + "|\n"
    )
    body = "".join(
        f"| {r['router']} | {r['seeds']} | {_cell(r['routing_accuracy'])} | {_cell(r['precision'])} | "
        f"{_cell(r['recall'])} | {_cell(r['answer_symbol'])} | {_cell(r['answer_word'])} | {_cell(r['answer_mixed'])} "
        f"| {_cell(r['negatives_kept'])} | {_ms(r['decision_s'])} | {_ratio(r['decision_vs_full_forward'])} | "
        f"{_ratio(r['neural_vs_decision'])} |\n"
        for r in rows
    )
    return head + body


# Targets the issue set before any measurement.
EARLY_EXIT_MAX_RATIO, NEURAL_MIN_SPEEDUP, SYMBOL_MIN_ANSWERS = 0.6, 10.0, 0.95


def findings(comparison: dict) -> str:
    """What the comparison found, in sentences built from its numbers (each target stated, met or not)."""
    rows = {r["router"]: r for r in router_table(comparison)}
    settings = comparison["settings"]
    out = [
        f"On {settings['model_id']} ({settings['n_items']} prompts, classifier layer {settings['layer']} of "
        f"{settings['n_layers']}; a full forward takes {_ms(comparison['full_forward_s']['median'])} ms median):"
    ]
    for name in ("probe", "lens"):
        row = rows.get(name)
        if not row:
            continue
        ratio, speedup = row["decision_vs_full_forward"], row["neural_vs_decision"]
        met = "meets" if ratio is not None and ratio <= EARLY_EXIT_MAX_RATIO else "misses"
        sentence = (
            f"the early-exit {name} router decides in {_ms(row['decision_s'])} ms, {_ratio(ratio)} of a full forward "
            f"({met} the {EARLY_EXIT_MAX_RATIO}x target)"
        )
        if speedup is not None:
            met = "meets" if speedup >= NEURAL_MIN_SPEEDUP else "misses"
            sentence += f" and {speedup:.1f}x faster than the neural router's generated decision ({met} {NEURAL_MIN_SPEEDUP:g}x)"
        out.append(sentence + ";")
    for name, row in rows.items():
        symbol = row["answer_symbol"]["mean"]
        if symbol is not None:
            met = "meets" if symbol >= SYMBOL_MIN_ANSWERS else "misses"
            out.append(f"{name} answers {symbol:.1%} of symbol prompts right ({met} {SYMBOL_MIN_ANSWERS:.0%});")
    regex = rows.get("regex")
    for key, where in (
        ("answer_word", "word prompts"),
        ("answer_mixed", "the mixed phrasings no router was fitted on"),
    ):
        if not regex or regex[key]["mean"] is None:
            continue
        for name in ("direction", "probe", "lens"):
            row = rows.get(name)
            if row and row[key]["mean"] is not None:
                verdict = "beats" if row[key]["mean"] > regex[key]["mean"] else "does not beat"
                out.append(
                    f"on {where} the {name} router {verdict} regex ({row[key]['mean']:.1%} vs "
                    f"{regex[key]['mean']:.1%} answered right);"
                )
    for name, row in rows.items():
        kept = row["negatives_kept"]["mean"]
        if kept is not None:
            out.append(f"{name} keeps {kept:.1%} of the negatives away from the calculator;")
    text = " ".join(out)
    return text[:-1] + "." if text.endswith(";") else text


def page_text(comparison: dict) -> str:
    """The virtual-experts section of docs/results.md, from a comparison alone: the router table, how it was made and
    its findings (``comparison["source"]``: the command and commit, when `workbench publish` recorded them)."""
    settings = comparison["settings"]
    source = comparison.get("source") or {}
    lines = [
        "## Virtual experts",
        "",
        f"Routers on {settings['model_id']}, {settings['n_items']} prompts of the routing evaluation set "
        f"({settings['per_kind']} per arithmetic phrasing; negatives kept = routed to the model), classifier layer "
        f"{settings['layer']}; fitted routers over seeds {settings['seeds']}; answers: the first integer equals the "
        "exact answer. Latency: per prompt, batch 1, medians, side by side in one process "
        "([routing.md](routing.md) says what each router does).",
        "",
        table_markdown(router_table(comparison)),
    ]
    if source:
        lines.append(f"Made by `{source['command']}` (git commit `{source.get('git_commit') or 'not recorded'}`), "
                     f"{(source.get('updated') or '?')[:10]}.")  # fmt: skip
    lines += ["", "**What we found.** " + findings(comparison)]
    return "\n".join(lines) + "\n"

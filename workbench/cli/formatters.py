"""The text the commands print: pure functions from a result (the dict a command writes, or a typed record) to the
lines shown, without the final newline. The commands print them; tests/test_cli_formatters.py checks them on
hand-built results."""

from __future__ import annotations


def _number(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "None" where it was not measured (no expected class word to read)."""
    return "None" if value is None else format(value, spec)


def _signed(word: str, other: str | None) -> str:
    """``word`` or ``word - other``: what an attribution measures."""
    return f"{word}{' - ' + other if other else ''}"


def probe_table(result: dict) -> str:
    """`introspect classifier`: accuracy, spread, control task and selectivity per layer, the best layer, the
    bag-of-tokens baseline and each test prompt's prediction at the best layer."""
    lines = [f"{'layer':>5}  {'accuracy':>8}  {'std':>6}  {'control':>7}  {'selectivity':>11}"]
    for r in result["layer_results"]:
        lines.append(
            f"{r['layer']:>5}  {r['accuracy']:>8.3f}  {r['std']:>6.3f}  {r['control_accuracy']:>7.3f}  "
            f"{r['selectivity']:>11.3f}"
        )
    lines.append(
        f"best layer {result['best_layer']}: accuracy {result['best_accuracy']:.3f} ({result['folds']}-fold CV)"
    )
    bag = result["bag_of_tokens"]
    lines.append(
        f"bag-of-tokens baseline (the prompt's token counts): accuracy {bag['accuracy']:.3f} ± {bag['std']:.3f}"
    )
    at = result["best_layer"]
    for t in result["test_predictions"]:
        if t["layer"] == at:
            p = t["probabilities"][t["predicted"]]
            lines.append(f"  {t['prompt']!r} -> {t['predicted']} ({p:.3f}) at layer {at}")
    return "\n".join(lines)


def lens_table(result: dict) -> str:
    """`introspect logit-lens`: per prompt the top token and each target's probability at the lens layer, and the
    top-1 score where expected targets were given."""
    words = list(result["target_token_ids"])
    lines = [
        f"logit lens at layer {result['layer']} of {result['num_layers']} ({result['model']})",
        f"{'prompt':<16} {'top token':<12} {'p':>6}  " + "  ".join(f"{w:>10}" for w in words),
    ]
    for r in result["results"]:
        probs = "  ".join(f"{r['target_probs'][w]:>10.2e}" for w in words)
        lines.append(f"{r['prompt']!r:<16} {r['top_token']!r:<12} {r['top_prob']:>6.3f}  {probs}")
    s = result["score"]
    if s["total"]:
        lines.append(
            f"score: {s['correct']}/{s['total']} prompts have the expected target as top-1 token; "
            f"mean expected-target probability {result['mean_expected_prob']:.2e}"
        )
    return "\n".join(lines)


def steer_table(result: dict, layers: list[int], strengths: list[float], generate: bool) -> str:
    """`introspect steer`: the first target's baseline probability and its change per layer x strength, for the
    direction and its random control (and the share of greedy answers that changed, with ``generate``)."""
    target = result["targets"][0]
    base = result["baseline"]["output_p"][target]
    lines = [
        f"baseline p({target.strip()}) {base:.4g}; change per layer x strength:",
        f"{'layer':>5} {'strength':>8} {'direction':>10} {'control':>10}"
        + ("  answers changed (dir/ctl)" if generate else ""),
    ]
    cells = {(c["layer"], c["strength"], c["kind"]): c for c in result["cells"]}
    for layer in layers:
        for strength in strengths:
            d, c = cells[(layer, strength, "direction")], cells[(layer, strength, "control")]
            changed = f"  {d['answers_changed']:.2f}/{c['answers_changed']:.2f}" if generate else ""
            lines.append(
                f"{layer:>5} {strength:>8g} {d['output_p'][target] - base:>+10.3g} "
                f"{c['output_p'][target] - base:>+10.3g}{changed}"
            )
    return "\n".join(lines)


def lora_ablation_table(result: dict) -> str:
    """`introspect ablate --adapter`: the lens's mean p(expected class word) and top-1 share with the whole adapter,
    with none of it, and with each layer's or module's LoRA removed (None: not measured)."""

    def row(name: str, r: dict) -> str:
        return f"{name:>12}  {_number(r['lens_expected_p'], '.4f'):>10}  {_number(r['lens_top1'], '.2f'):>6}"

    lines = [f"lens at layer {result['readout_layer']}: mean p(expected class word), top-1 share"]
    lines.append(row("whole", result["whole_adapter"]))
    lines.append(row("no adapter", result["no_adapter"]))
    lines += [row(f"-{r['removed']}", r) for r in result["rows"]]
    return "\n".join(lines)


def head_ablation_table(result: dict, most: int = 10) -> str:
    """`introspect ablate --heads`: the unablated lens p and the ``most`` ablations that lower it most (a row not
    measured sorts as 0)."""
    base = _number(result["baseline"]["lens_expected_p"], ".4f")
    lines = [
        f"lens at layer {result['readout_layer']}: mean p(expected class word) {base} unablated; "
        f"{result['mode']}-ablated:"
    ]
    rows = sorted(result["rows"], key=lambda r: r["lens_expected_p"] if r["lens_expected_p"] is not None else 0)
    lines += [f"  L{r['layer']} head {r['head']}: {_number(r['lens_expected_p'], '.4f')}" for r in rows[:most]]
    return "\n".join(lines)


def dla_summary(result: dict, word: str, other: str | None, n_prompts: int, most: int = 5) -> str:
    """`introspect attribute --method dla`: the total and the embedding's share, and the ``most`` heads with the
    largest attribution (by size)."""
    heads = sorted(
        ((r["layer"], h, v) for r in result["layers"] for h, v in enumerate(r["heads"])), key=lambda item: -abs(item[2])
    )
    return (
        f"DLA of {_signed(word, other)} at layer {result['layer']}, {n_prompts} prompts: "
        f"total {result['total']:+.3f}, embedding {result['embed']:+.3f}\n"
        "largest heads: " + ", ".join(f"L{layer}H{h} {v:+.3f}" for layer, h, v in heads[:most])
    )


def attribution_patching_summary(granularity: str, word: str, other: str | None, n_pairs: int) -> str:
    """`introspect attribute --method patching`: what was attributed, over how many pairs."""
    return f"attribution patching ({granularity}) of {_signed(word, other)}, {n_pairs} pairs"


def interchange_table(result: dict) -> str:
    """`introspect interchange`: per basis (the probe's, the placebo, the random one) the lens and output effects,
    mean ± std over pairs."""
    return "\n".join(
        f"{kind:>8}: lens effect {e['lens_effect_mean']:+.3f} ± {e['lens_effect_std']:.3f}, "
        f"output effect {e['output_effect_mean']:+.3f} ± {e['output_effect_std']:.3f}"
        for kind, e in result["effects"].items()
    )


def patch_summary(result: dict) -> str:
    """`introspect patch`: per metric the unpatched target and source means, and the cell whose patch moves it most
    (with the share of the source-target gap it recovers, where measured)."""
    lines = []
    for name, stats in result["metrics"].items():
        lines.append(
            f"{name} over {stats['pairs']} pairs: target {stats['target_mean']:+.3f}, source {stats['source_mean']:+.3f}"
        )
        best = max(range(len(stats["mean"])), key=lambda i: stats["mean"][i])
        share = f", recovers {stats['recovered'][best]:.2f}" if stats["recovered"] else ""
        lines.append(f"  largest: {result['cells'][best]} -> {stats['mean'][best]:+.3f}{share}")
    return "\n".join(lines)


def route_eval_summary(router: str, metrics: dict) -> str:
    """`route --eval`: routing and answer accuracy over the whole set and the median decision time."""
    overall, decision_s = metrics["overall"], metrics["timing"]["decision_s"]["median"]
    return (
        f"{router}: routing accuracy {overall['routing_accuracy']:.3f}, answer accuracy "
        f"{overall['answer_accuracy']:.3f}, decision {decision_s * 1e3:.1f} ms median"
    )


def sft_summary(metrics, output) -> str:
    """`train sft`: steps and where the adapter is, and (when measured before training) the correct-operation lens
    probability, top-1 score, held-out answer loss and exact match before -> after. ``metrics``: a TrainMetrics."""
    before, after = metrics.before, metrics.after
    lines = [f"trained {metrics.steps} steps; adapter and metrics in {output}"]
    if before:
        lens, top1 = after.lens, after.lens.top1_score
        lines.append(
            f"correct-operation lens probability at layer {lens.layer}: {before.lens.mean_correct_target_prob:.3e} "
            f"-> {lens.mean_correct_target_prob:.3f}; top-1 {top1.correct}/{top1.total}"
        )
        lines.append(
            f"held-out answer loss {before.answer_loss:.3f} -> {after.answer_loss:.3f}; "
            f"exact match {before.answer_exact_match:.3f} -> {after.answer_exact_match:.3f}"
        )
    return "\n".join(lines)


def grpo_summary(metrics, output) -> str:
    """`train grpo`: steps, where the adapter is, greedy accuracy and the correct-operation lens probability before
    -> after. ``metrics``: a TrainMetrics."""
    b, a = metrics.before, metrics.after
    return (
        f"trained {metrics.steps} GRPO steps; adapter, grpo_log.jsonl and metrics.json in {output}\n"
        f"greedy answers correct {b.greedy_accuracy:.3f} -> {a.greedy_accuracy:.3f}; correct-operation lens "
        f"probability at layer {a.lens.layer}: {b.lens.mean_correct_target_prob:.3e} -> "
        f"{a.lens.mean_correct_target_prob:.3e}"
    )


def memory_summary(model: str, dtype: str, est, shards: int, where: str, free: int) -> str:
    """`estimate`: what is estimated, its parts and total in GiB, and whether it fits the ``free`` bytes of
    ``where``. ``est``: a core.memory.Estimate."""
    gib = 1024**3
    verdict = "fits" if est.total <= free else "does NOT fit"
    return (
        f"{model} in {dtype}: {est.what}{f', sharded over {shards}' if shards > 1 else ''}\n"
        f"  weights {est.weights / gib:.2f} GiB, trainable {est.trainable / gib:.2f} GiB, "
        f"gradients + optimizer {est.gradients_and_optimizer / gib:.2f} GiB, activations {est.activations / gib:.2f} GiB\n"
        f"  total {est.total / gib:.2f} GiB; {where} has {free / gib:.1f} GiB free: {verdict}"
    )


def run_summary(out, phases: dict, run_json) -> str:
    """`run`: each phase's status and seconds, and where run.json is."""
    states = ", ".join(f"{name} {p['status']} ({p.get('seconds') or 0:.0f} s)" for name, p in phases.items())
    return f"run folder {out}: {states}; details in {run_json}"


def claims_summary(claims: list[dict], failed: list[dict], report) -> str:
    """`run` with verify: how many of the guide's claims hold or are reported, and where the report is."""
    return f"claims: {len(claims) - len(failed)} of {len(claims)} hold or are reported; report in {report}"


def ladder_table(result: dict) -> str:
    """The readout ladder: per layer, each readout's top-1 among the class words and mean p(class word); then the
    first layer each readout reads the class at (top-1 on at least 90% of the prompts)."""
    readouts = list(dict.fromkeys(r["readout"] for r in result["rows"]))
    cell = {(r["readout"], r["layer"]): r for r in result["rows"]}
    lines = [
        f"readouts on {result['n_eval']} held-out {result['task']} prompts: top-1 among the class words / mean p(class word)",
        "layer  " + "  ".join(f"{name:>20}" for name in readouts),
    ]
    for layer in result["layers"]:
        parts = [
            f"{cell[(n, layer)]['top1']:>6.2f} / {_number(cell[(n, layer)]['p_expected'], '.1e'):>9}" for n in readouts
        ]
        lines.append(f"L{layer:<5} " + "  ".join(f"{p:>20}" for p in parts))
    first = ", ".join(
        f"{n} {'L' + str(v) if v is not None else 'none'}" for n, v in result["first_reading_layer"].items()
    )
    return "\n".join(lines) + f"\nfirst layer that reads the class: {first}" + steering_text(result.get("steering"))


def steering_text(steering: dict | None) -> str:
    """Steerable × decodable: how many cells steer, and per readout its 2 × 2 counts and Spearman's rho."""
    if not steering:
        return ""
    cells = steering["cells"]
    lines = [f"\nsteering at strength {steering['strength']:g}: {sum(c['steerable'] for c in cells)} of {len(cells)} "
             f"cells (layer x class pair) steerable beyond {steering['n_controls']} random directions"]  # fmt: skip
    for name, r in steering["by_readout"].items():
        rho = "—" if r["spearman_rho"] is None else f"{r['spearman_rho']:+.2f}"
        counts = ", ".join(f"{k} {v}" for k, v in r["table"].items())
        lines.append(f"  {name}: {counts}; rho(accessibility, steering) {rho}")
    return "\n".join(lines)

"""`workbench introspect steer|ablate|attribute|interchange|patch`: the causal tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import WorkbenchError
from ._app import (
    AdapterOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    OutputOpt,
    TaskOpt,
    _figure_path,
    _float_list,
    _save,
    _task_probe_prompts,
    flag,
    introspect,
)


@introspect.command("steer")
def steer_cmd(
    output: OutputOpt,
    direction: Annotated[
        str, typer.Option("--direction", help="mean-diff:CLASS_A,CLASS_B | unembed:WORD | file:PATH | random:SEED")
    ],
    task: TaskOpt = None,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt (default: --task\'s lens prompts)') = None,
    targets: Annotated[
        Optional[list[str]],
        typer.Option("--targets", help="word whose probability is read (repeat; default: --task's)"),
    ] = None,
    layers: Annotated[
        str, typer.Option("--layers", help="steered layers: auto (6, evenly spaced) | 3,5 | 2-8")
    ] = "auto",
    strengths: Annotated[
        str, typer.Option("--strengths", help="comma-separated, in units of the layer's median residual norm")
    ] = "-2,-1,-0.5,0,0.5,1,2",
    readout_layer: flag(int, "--readout-layer", help="lens layer read (default: the classifier layer)") = None,
    control_seed: Annotated[int, typer.Option("--control-seed", help="seed of the random control direction")] = 0,
    generate: Annotated[bool, typer.Option("--generate/--no-generate", help="also greedy answers, steered")] = True,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 8,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):
    """Steering: add a direction after a layer at every position and decode step; the effect over layer x strength
    on the model's p(target), the lens and the greedy answers, against a random direction of the same norm."""
    from ..core.layers import parse_layers
    from ..core.results import check_writable
    from ..core.tasks import parse_prompt_list

    strength_list = _float_list("--strengths", strengths)
    labels = None
    if prompts is None or not targets or direction.startswith("mean-diff:"):
        from ..tasks.data import lens_set

        task_prompts, task_targets, _ = lens_set(task or "arithmetic")
        targets = targets or task_targets
        if direction.startswith("mean-diff:"):
            probe, _ = _task_probe_prompts(task or "arithmetic")
            labelled_prompts, labels = probe.prompts, probe.labels
    prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
    check_writable(output)
    from ..causal.steering import direction_from, steer_sweep
    from ..core.models import load_model
    from ..ui.causal_plots import steering_sweep_figure
    from ..ui.plots import start_png_export

    start_png_export()
    lm = load_model(model, device, adapter, dtype)
    n = lm.n_layers
    chosen = sorted({round(i * (n - 1) / 5) for i in range(6)}) if layers == "auto" else parse_layers(layers, n)
    readout = lm.classifier_layer if readout_layer is None else readout_layer
    found = direction_from(direction, lm, readout, labelled_prompts if labels else None, labels)
    result = steer_sweep(
        lm, prompt_list, found, chosen, strength_list, targets, readout, control_seed, generate, max_new_tokens
    )
    _save(output, "introspect.steer", result, lm, steering_sweep_figure(result), model=model, direction=direction,
          task=task, layers=layers, strengths=strength_list, readout_layer=readout, control_seed=control_seed,
          generate=generate, max_new_tokens=max_new_tokens,
          direction_layer=readout if direction.startswith("mean-diff:") else None)  # fmt: skip
    target = result["targets"][0]
    print(f"baseline p({target.strip()}) {result['baseline']['output_p'][target]:.4g}; change per layer x strength:")
    print(
        f"{'layer':>5} {'strength':>8} {'direction':>10} {'control':>10}"
        + ("  answers changed (dir/ctl)" if generate else "")
    )
    cells = {(c["layer"], c["strength"], c["kind"]): c for c in result["cells"]}
    base = result["baseline"]["output_p"][target]
    for layer in chosen:
        for strength in strength_list:
            d, c = cells[(layer, strength, "direction")], cells[(layer, strength, "control")]
            changed = f"  {d['answers_changed']:.2f}/{c['answers_changed']:.2f}" if generate else ""
            print(
                f"{layer:>5} {strength:>8g} {d['output_p'][target] - base:>+10.3g} {c['output_p'][target] - base:>+10.3g}"
                + changed
            )
    print(f"wrote {output} and {_figure_path(output)}")


@introspect.command("ablate")
def ablate_cmd(
    output: OutputOpt,
    adapter: flag(
        Path, "--adapter", help="the trained peft adapter whose LoRA is removed (not needed with --heads)"
    ) = None,
    heads: flag(
        str, "--heads", help="zero | mean: ablate attention heads instead (each head, each layer's all)"
    ) = None,
    head_layers: flag(
        str, "--head-layers", help="--heads: layers whose heads are ablated (default: 0..readout)"
    ) = None,
    per: Annotated[
        str, typer.Option("--per", help="layer: each layer's LoRA in turn | module: each module's")
    ] = "layer",
    modules: Annotated[
        Optional[list[str]], typer.Option("--modules", help="only these: v_proj, ... or vo | qk | mlp (repeat)")
    ] = None,
    task: TaskOpt = None,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt (default: --task\'s lens prompts)') = None,
    readout_layer: flag(int, "--readout-layer", help="lens layer read (default: the classifier layer)") = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=0, help="greedy answer tokens (0: none)")] = 8,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
):
    """Remove a trained adapter's LoRA per layer or per module and re-measure the lens at the classifier layer and the
    greedy answers: which layers carry the classifier?"""
    from ..core.results import check_writable
    from ..core.tasks import parse_prompt_list
    from ..tasks.data import lens_set

    if per not in ("layer", "module"):
        raise WorkbenchError(f"--per {per!r}: use layer or module")
    if heads is not None and heads not in ("zero", "mean"):
        raise WorkbenchError(f"--heads {heads!r}: use zero or mean")
    if heads is None and adapter is None:
        raise WorkbenchError("nothing to ablate: pass --adapter DIR (its LoRA) or --heads zero|mean (attention heads)")
    task_prompts, targets, expected = lens_set(task or "arithmetic")
    prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
    check_writable(output)
    from ..causal.ablation import ablation_sweep
    from ..core.models import load_model

    lm = load_model(model, device, adapter, dtype)
    if heads is not None:
        _ablate_heads(lm, output, heads, head_layers, prompt_list, targets, None if prompts else expected,
                      readout_layer, max_new_tokens, dict(model=model, adapter=str(adapter) if adapter else None,
                      task=task, dtype=lm.describe()["dtype"]))  # fmt: skip
        return
    result = ablation_sweep(
        lm, prompt_list, targets, None if prompts else expected, readout_layer, per, modules, max_new_tokens
    )
    _save(output, "introspect.ablate", result, lm, model=model, per=per, modules=modules, task=task,
          readout_layer=result["readout_layer"], max_new_tokens=max_new_tokens)  # fmt: skip

    def show(name: str, row: dict) -> None:
        p, top1 = row["lens_expected_p"], row["lens_top1"]
        print(f"{name:>12}  {p if p is None else f'{p:.4f}':>10}  {top1 if top1 is None else f'{top1:.2f}':>6}")

    print(f"lens at layer {result['readout_layer']}: mean p(expected class word), top-1 share")
    show("whole", result["whole_adapter"])
    show("no adapter", result["no_adapter"])
    for row in result["rows"]:
        show(f"-{row['removed']}", row)
    print(f"wrote {output}")


def _ablate_heads(lm, output, mode, head_layers, prompts, targets, expected, readout_layer, max_new_tokens, settings):
    from ..causal.heads import head_ablation_sweep
    from ..core.layers import parse_layers
    from ..core.results import write_result

    layers = parse_layers(head_layers, lm.n_layers) if head_layers else None
    result = head_ablation_sweep(lm, prompts, targets, expected, readout_layer, layers, mode, max_new_tokens)
    settings |= dict(
        heads=mode, head_layers=head_layers, readout_layer=result["readout_layer"], max_new_tokens=max_new_tokens
    )
    write_result(output, "introspect.ablate_heads", result, settings)
    base = result["baseline"]["lens_expected_p"]
    print(f"lens at layer {result['readout_layer']}: mean p(expected class word) {base:.4f} unablated; {mode}-ablated:")
    rows = sorted(result["rows"], key=lambda r: r["lens_expected_p"] if r["lens_expected_p"] is not None else 0)
    for row in rows[:10]:
        print(f"  L{row['layer']} head {row['head']}: {row['lens_expected_p']:.4f}")
    print(f"wrote {output}")


@introspect.command("attribute")
def attribute_cmd(
    output: OutputOpt,
    word: Annotated[str, typer.Option("--word", help="class word attributed (e.g. multiply)")],
    other: flag(str, "--other", help="attribute word minus this word's logit (e.g. add)") = None,
    method: Annotated[str, typer.Option("--method", help="dla: direct logit attribution | patching: node-level "
                                        "attribution patching")] = "dla",
    task: TaskOpt = None,
    prompts: flag(str, "--prompts", help='dla: "p1|p2" or @file.txt (default: --task\'s prompts of --word\'s class)') = None,
    source_class: Annotated[str, typer.Option("--source-class", help="patching: class of the clean prompts")] = "multiply",
    target_class: Annotated[str, typer.Option("--target-class", help="patching: class of the corrupt prompts")] = "add",
    n_pairs: Annotated[int, typer.Option("--n-pairs", min=1, help="patching: pairs from --task")] = 20,
    metric: Annotated[str, typer.Option("--metric", help="patching: lens (at --layer) | output")] = "lens",
    granularity: Annotated[str, typer.Option("--granularity", help="patching: node | edge (refused for GQA)")] = "node",
    layer: flag(int, "--layer", help="lens layer attributed (default: the classifier layer)") = None,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):  # fmt: skip
    """Which components write the class word at the classifier layer: direct logit attribution per layer and per head
    (through the final norm with its scale frozen), or node-level attribution patching from clean to corrupt pairs."""
    from ..core.results import check_writable, write_result
    from ..core.tasks import parse_prompt_list

    if method not in ("dla", "patching"):
        raise WorkbenchError(f"--method {method!r}: use dla or patching")
    if method == "dla" and not prompts:
        from ..tasks.data import lens_set
        from ..tasks.source import source_of
        from ..tasks.spec import load_task

        task_prompts, _, expected = lens_set(task)  # expected None: each prompt's class as the task's source reads it
        expected = expected or [source_of(load_task(task)).expected_class(p) for p in task_prompts]
        prompt_list = [p for p, e in zip(task_prompts, expected) if e == word] or task_prompts
    elif method == "dla":
        prompt_list = parse_prompt_list(prompts, "--prompts")
    else:
        from ..causal.patching import task_pairs

        pairs, _ = task_pairs(task, source_class, target_class, n_pairs)
    check_writable(output)
    from ..core.models import load_model

    lm = load_model(model, device, adapter, dtype)
    settings = dict(model=model, adapter=str(adapter) if adapter else None, task=task, word=word, other=other,
                    method=method, layer=layer, dtype=lm.describe()["dtype"])  # fmt: skip
    if method == "dla":
        from ..causal.attribution import direct_logit_attribution

        result = direct_logit_attribution(lm, prompt_list, word, other, layer)
        write_result(output, "introspect.attribute", result, settings)
        heads = sorted(((r["layer"], h, v) for r in result["layers"] for h, v in enumerate(r["heads"])),
                       key=lambda item: -abs(item[2]))  # fmt: skip
        print(f"DLA of {word}{' - ' + other if other else ''} at layer {result['layer']}, {len(prompt_list)} prompts: "
              f"total {result['total']:+.3f}, embedding {result['embed']:+.3f}")  # fmt: skip
        print("largest heads: " + ", ".join(f"L{lay}H{h} {v:+.3f}" for lay, h, v in heads[:5]))
    else:
        from ..causal.attribution import attribution_patching

        settings |= dict(source_class=source_class, target_class=target_class, n_pairs=n_pairs, metric=metric,
                         granularity=granularity)  # fmt: skip
        result = attribution_patching(lm, [p.source for p in pairs], [p.target for p in pairs], word, other, metric,
                                      layer, granularity)  # fmt: skip
        write_result(output, "introspect.attribute", result, settings)
        print(f"attribution patching ({granularity}) of {word}{' - ' + other if other else ''}, {len(pairs)} pairs")
    print(f"wrote {output}")


@introspect.command("interchange")
def interchange_cmd(
    output: OutputOpt,
    basis: Annotated[str, typer.Option("--basis", help="probe | mean-diff | random: the subspace interchanged")] = "probe",
    layer: flag(int, "--layer", help="layer whose residual is interchanged (default: the classifier layer)") = None,
    rank: Annotated[int, typer.Option("--rank", min=1, help="dimensions of a random basis")] = 1,
    strength: Annotated[float, typer.Option("--strength", help="1: the source's component, 0: no change")] = 1.0,
    task: TaskOpt = None,
    source_class: Annotated[str, typer.Option("--source-class", help="class of the source prompts")] = "multiply",
    target_class: Annotated[str, typer.Option("--target-class", help="class of the target prompts")] = "add",
    n_pairs: Annotated[int, typer.Option("--n-pairs", min=1)] = 50,
    readout_layer: flag(int, "--readout-layer", help="lens layer read (default: --layer)") = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the placebo and random controls")] = 0,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):  # fmt: skip
    """Interchange on the probe's subspace (SubspaceInterchange): each target's component along the basis replaced by
    its source's at the last token, against a norm-matched placebo and a random basis: is the direction the probe
    reads the one the model uses?"""
    from ..causal.patching import task_pairs
    from ..core.results import check_writable, write_result

    pairs, words = task_pairs(task, source_class, target_class, n_pairs)
    probe, _ = _task_probe_prompts(task or "arithmetic")
    check_writable(output)
    from ..causal.interchange import subspace_interchange
    from ..core.models import load_model

    lm = load_model(model, device, adapter, dtype)
    at = lm.classifier_layer if layer is None else layer
    result = subspace_interchange(lm, [p.source for p in pairs], [p.target for p in pairs], at, words[source_class],
                                  words[target_class], basis, probe.prompts, probe.labels, rank, readout_layer,
                                  strength, seed)  # fmt: skip
    settings = dict(model=model, adapter=str(adapter) if adapter else None, task=task, basis=basis, layer=at, rank=rank,
                    strength=strength, source_class=source_class, target_class=target_class, n_pairs=n_pairs,
                    readout_layer=readout_layer, seed=seed, dtype=lm.describe()["dtype"])  # fmt: skip
    write_result(output, "introspect.interchange", result, settings)
    for kind, effect in result["effects"].items():
        print(f"{kind:>8}: lens effect {effect['lens_effect_mean']:+.3f} ± {effect['lens_effect_std']:.3f}, "
              f"output effect {effect['output_effect_mean']:+.3f} ± {effect['output_effect_std']:.3f}")  # fmt: skip
    print(f"wrote {output}")


@introspect.command("patch")
def patch_cmd(
    output: OutputOpt,
    task: TaskOpt = None,
    pairs_file: flag(Path, "--pairs", help="JSONL: source, target, source_class, target_class[, *_answer]") = None,
    source_class: Annotated[str, typer.Option("--source-class", help="class of the patched-in prompts")] = "multiply",
    target_class: Annotated[str, typer.Option("--target-class", help="class of the prompts patched")] = "add",
    n_pairs: Annotated[int, typer.Option("--n-pairs", min=1, help="pairs from --task's held-out records")] = 100,
    what: Annotated[
        str, typer.Option("--what", help="resid: the residual stream | heads: each head's output")
    ] = "resid",
    positions: Annotated[
        str, typer.Option("--positions", help="last: the last token | each: every position | all: all at once")
    ] = "last",
    layers: Annotated[str, typer.Option("--layers", help="all | 3,5 | 2-8")] = "all",
    readout_layer: flag(int, "--readout-layer", help="lens layer read (default: the classifier layer)") = None,
    align: Annotated[
        str, typer.Option("--align", help="strict: pairs of equal length | last: patch the last token only")
    ] = "strict",
    seed: Annotated[int, typer.Option("--seed", help="seed of the bootstrap intervals")] = 0,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):
    """Activation patching: each source prompt's residual stream (per layer and position) or head outputs put into
    its target prompt; per cell the lens's class-word logit difference at the classifier layer and the answer's
    log-probability difference, mean over pairs with bootstrap intervals."""
    from ..causal.patching import POSITIONS, WHAT, most_common_length, read_pairs, task_pairs
    from ..core.layers import parse_layers
    from ..core.results import check_writable

    if what not in WHAT:
        raise WorkbenchError(f"--what {what!r}: use {' or '.join(WHAT)}")
    if positions not in POSITIONS:
        raise WorkbenchError(f"--positions {positions!r}: use {', '.join(POSITIONS)}")
    if pairs_file is not None:
        pairs, words = read_pairs(pairs_file), {}
        if task:
            from ..tasks.spec import load_task

            words = dict(load_task(task).classes)
    else:
        pairs, words = task_pairs(task, source_class, target_class, n_pairs)
    check_writable(output)
    from ..causal.patching import patch_sweep
    from ..core.models import load_model
    from ..ui.causal_plots import patching_figure
    from ..ui.plots import start_png_export

    start_png_export()
    lm = load_model(model, device, adapter, dtype)
    if positions == "each" and pairs_file is None:
        kept = most_common_length(lm, pairs)
        print(f"--positions each: {len(kept)} of {len(pairs)} pairs share the most common token length")
        pairs = kept
    chosen = list(range(lm.n_layers)) if layers == "all" else parse_layers(layers, lm.n_layers)
    result = patch_sweep(lm, pairs, what, positions, chosen, readout_layer, align, words, seed=seed)
    _save(output, "introspect.patch", result, lm, patching_figure(result), model=model, task=task,
          pairs=str(pairs_file) if pairs_file else None, source_class=source_class, target_class=target_class,
          n_pairs=n_pairs, what=what, positions=positions, layers=layers, readout_layer=result["readout_layer"],
          align=align, seed=seed)  # fmt: skip
    for name, stats in result["metrics"].items():
        print(
            f"{name} over {stats['pairs']} pairs: target {stats['target_mean']:+.3f}, source {stats['source_mean']:+.3f}"
        )
        best = max(range(len(stats["mean"])), key=lambda i: stats["mean"][i])
        share = f", recovers {stats['recovered'][best]:.2f}" if stats["recovered"] else ""
        print(f"  largest: {result['cells'][best]} -> {stats['mean'][best]:+.3f}{share}")
    print(f"wrote {output} and {_figure_path(output)}")

"""`workbench introspect steer|ablate|attribute|interchange|patch`: the causal tools."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import WorkbenchError
from . import formatters
from ._app import (
    AdapterOpt,
    DeviceOpt,
    DtypeOpt,
    LayersOpt,
    LensPromptsOpt,
    ModelOpt,
    OutputOpt,
    ReadoutLayerOpt,
    TaskOpt,
    _float_list,
    _save,
    _task_probe_prompts,
    flag,
    introspect,
    option,
)


@introspect.command("steer")
def steer_cmd(
    output: OutputOpt,
    direction: option(str, "--direction", help="mean-diff:CLASS_A,CLASS_B | unembed:WORD | file:PATH | random:SEED"),
    task: TaskOpt = None,
    prompts: LensPromptsOpt = None,
    targets: option(
        Optional[list[str]], "--targets", help="word whose probability is read (repeat; default: --task's)"
    ) = None,
    layers: option(str, "--layers", help="steered layers: auto (6, evenly spaced) | 3,5 | 2-8") = "auto",
    strengths: option(
        str, "--strengths", help="comma-separated, in units of the layer's median residual norm"
    ) = "-2,-1,-0.5,0,0.5,1,2",
    readout_layer: ReadoutLayerOpt = None,
    control_seed: option(int, "--control-seed", help="seed of the random control direction") = 0,
    generate: option(bool, "--generate/--no-generate", help="also greedy answers, steered") = True,
    max_new_tokens: option(int, "--max-new-tokens", min=1) = 8,
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
    _save(output, "introspect.steer", result, lm, steering_sweep_figure(result),
          formatters.steer_table(result, chosen, strength_list, generate), model=model, direction=direction,
          task=task, layers=layers, strengths=strength_list, readout_layer=readout, control_seed=control_seed,
          generate=generate, max_new_tokens=max_new_tokens,
          direction_layer=readout if direction.startswith("mean-diff:") else None)  # fmt: skip


# ablate's two kinds: a trained adapter's LoRA, or attention heads
LoraAdapterOpt = flag(
    Path, "--adapter", help="the trained peft adapter whose LoRA is removed (not needed with --heads)"
)
HeadsOpt = flag(str, "--heads", help="zero | mean: ablate attention heads instead (each head, each layer's all)")
HeadLayersOpt = flag(str, "--head-layers", help="--heads: layers whose heads are ablated (default: 0..readout)")


@introspect.command("ablate")
def ablate_cmd(
    output: OutputOpt,
    adapter: LoraAdapterOpt = None,
    heads: HeadsOpt = None,
    head_layers: HeadLayersOpt = None,
    per: option(str, "--per", help="layer: each layer's LoRA in turn | module: each module's") = "layer",
    modules: option(Optional[list[str]], "--modules", help="only these: v_proj, ... or vo | qk | mlp (repeat)") = None,
    task: TaskOpt = None,
    prompts: LensPromptsOpt = None,
    readout_layer: ReadoutLayerOpt = None,
    max_new_tokens: option(int, "--max-new-tokens", min=0, help="greedy answer tokens (0: none)") = 8,
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
        from ..causal.heads import head_ablation_sweep
        from ..core.layers import parse_layers

        layers = parse_layers(head_layers, lm.n_layers) if head_layers else None
        result = head_ablation_sweep(lm, prompt_list, targets, None if prompts else expected, mode=heads,
                                     layers=layers, readout_layer=readout_layer, max_new_tokens=max_new_tokens)  # fmt: skip
        _save(output, "introspect.ablate_heads", result, lm, None, formatters.head_ablation_table(result), model=model,
              task=task, heads=heads, head_layers=head_layers, readout_layer=result["readout_layer"],
              max_new_tokens=max_new_tokens)  # fmt: skip
        return
    result = ablation_sweep(
        lm, prompt_list, targets, None if prompts else expected, readout_layer, per, modules, max_new_tokens
    )
    _save(output, "introspect.ablate", result, lm, None, formatters.lora_ablation_table(result), model=model, per=per,
          modules=modules, task=task, readout_layer=result["readout_layer"], max_new_tokens=max_new_tokens)  # fmt: skip


@introspect.command("attribute")
def attribute_cmd(
    output: OutputOpt,
    word: option(str, "--word", help="class word attributed (e.g. multiply)"),
    other: flag(str, "--other", help="attribute word minus this word's logit (e.g. add)") = None,
    method: option(
        str, "--method", help="dla: direct logit attribution | patching: node-level attribution patching"
    ) = "dla",
    task: TaskOpt = None,
    prompts: flag(
        str, "--prompts", help="dla: \"p1|p2\" or @file.txt (default: --task's prompts of --word's class)"
    ) = None,
    source_class: option(str, "--source-class", help="patching: class of the clean prompts") = "multiply",
    target_class: option(str, "--target-class", help="patching: class of the corrupt prompts") = "add",
    n_pairs: option(int, "--n-pairs", min=1, help="patching: pairs from --task") = 20,
    metric: option(str, "--metric", help="patching: lens (at --layer) | output") = "lens",
    granularity: option(str, "--granularity", help="patching: node | edge (refused for GQA)") = "node",
    layer: flag(int, "--layer", help="lens layer attributed (default: the classifier layer)") = None,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):
    """Which components write the class word at the classifier layer: direct logit attribution per layer and per head
    (through the final norm with its scale frozen), or node-level attribution patching from clean to corrupt pairs."""
    from ..core.results import check_writable
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
    settings = dict(model=model, task=task, word=word, other=other, method=method, layer=layer)
    if method == "dla":
        from ..causal.attribution import direct_logit_attribution

        result = direct_logit_attribution(lm, prompt_list, word, other, layer)
        summary = formatters.dla_summary(result, word, other, len(prompt_list))
    else:
        from ..causal.attribution import attribution_patching

        settings |= dict(source_class=source_class, target_class=target_class, n_pairs=n_pairs, metric=metric,
                         granularity=granularity)  # fmt: skip
        result = attribution_patching(lm, [p.source for p in pairs], [p.target for p in pairs], word, other, metric,
                                      layer, granularity)  # fmt: skip
        summary = formatters.attribution_patching_summary(granularity, word, other, len(pairs))
    _save(output, "introspect.attribute", result, lm, None, summary, **settings)


@introspect.command("interchange")
def interchange_cmd(
    output: OutputOpt,
    basis: option(str, "--basis", help="probe | mean-diff | random: the subspace interchanged") = "probe",
    layer: flag(int, "--layer", help="layer whose residual is interchanged (default: the classifier layer)") = None,
    rank: option(int, "--rank", min=1, help="dimensions of a random basis") = 1,
    strength: option(float, "--strength", help="1: the source's component, 0: no change") = 1.0,
    task: TaskOpt = None,
    source_class: option(str, "--source-class", help="class of the source prompts") = "multiply",
    target_class: option(str, "--target-class", help="class of the target prompts") = "add",
    n_pairs: option(int, "--n-pairs", min=1) = 50,
    readout_layer: flag(int, "--readout-layer", help="lens layer read (default: --layer)") = None,
    seed: option(int, "--seed", help="seed of the placebo and random controls") = 0,
    model: ModelOpt = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):
    """Interchange on the probe's subspace (SubspaceInterchange): each target's component along the basis replaced by
    its source's at the last token, against a norm-matched placebo and a random basis: is the direction the probe
    reads the one the model uses?"""
    from ..causal.patching import task_pairs
    from ..core.results import check_writable

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
    _save(output, "introspect.interchange", result, lm, None, formatters.interchange_table(result), model=model,
          task=task, basis=basis, layer=at, rank=rank, strength=strength, source_class=source_class,
          target_class=target_class, n_pairs=n_pairs, readout_layer=readout_layer, seed=seed)  # fmt: skip


@introspect.command("patch")
def patch_cmd(
    output: OutputOpt,
    task: TaskOpt = None,
    pairs_file: flag(Path, "--pairs", help="JSONL: source, target, source_class, target_class[, *_answer]") = None,
    source_class: option(str, "--source-class", help="class of the patched-in prompts") = "multiply",
    target_class: option(str, "--target-class", help="class of the prompts patched") = "add",
    n_pairs: option(int, "--n-pairs", min=1, help="pairs from --task's held-out records") = 100,
    what: option(str, "--what", help="resid: the residual stream | heads: each head's output") = "resid",
    positions: option(
        str, "--positions", help="last: the last token | each: every position | all: all at once"
    ) = "last",
    layers: LayersOpt = "all",
    readout_layer: ReadoutLayerOpt = None,
    align: option(str, "--align", help="strict: pairs of equal length | last: patch the last token only") = "strict",
    seed: option(int, "--seed", help="seed of the bootstrap intervals") = 0,
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
    _save(output, "introspect.patch", result, lm, patching_figure(result), formatters.patch_summary(result),
          model=model, task=task, pairs=str(pairs_file) if pairs_file else None, source_class=source_class,
          target_class=target_class, n_pairs=n_pairs, what=what, positions=positions, layers=layers,
          readout_layer=result["readout_layer"], align=align, seed=seed)  # fmt: skip

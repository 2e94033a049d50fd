"""`workbench introspect classifier` and `workbench introspect logit-lens` (the guide's two commands), and
`workbench introspect readouts` (the readout ladder beside the logit lens)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import WorkbenchError
from ._app import (
    AdapterOpt,
    BatchOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    LayersOpt,
    ModelOpt,
    OutputOpt,
    SeedOpt,
    TaskOpt,
    _save,
    _task_probe_prompts,
    flag,
    introspect,
    option,
)
from .formatters import ladder_table, lens_table, probe_table


@introspect.command("classifier")
def classifier_cmd(
    output: OutputOpt,
    classes: option(
        Optional[list[str]],
        "--classes",
        help='"label:prompt1|prompt2|..." (repeat per class; @file.txt for a list; default: --task\'s)',
    ) = None,
    task: TaskOpt = None,
    model: ModelOpt = "default",
    test: flag(str, "--test", help='"p1|p2" or @file.txt: prompts to classify') = None,
    layers: LayersOpt = "all",
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    adapter: AdapterOpt = None,
):
    """Per-layer linear probes: which class does the residual stream at the last prompt token encode?"""
    from ..core.layers import parse_layers
    from ..core.results import check_writable
    from ..core.tasks import parse_classes, parse_prompt_list

    if classes:
        data = parse_classes(classes)
        tests = parse_prompt_list(test, "--test") if test else []
    elif task:
        data, tests = _task_probe_prompts(task)
        tests = parse_prompt_list(test, "--test") if test else tests
    else:
        raise WorkbenchError('give the classes: --classes "label:p1|p2" once per class, or --task NAME')
    check_writable(output)
    from ..core import readouts as ops
    from ..core.models import load_model
    from ..ui.plots import probe_accuracy_figure, start_png_export

    start_png_export()  # the PNG's browser starts while the model loads and the probes fit
    lm = load_model(model, device, adapter, dtype, device_map, batch_size)
    chosen = parse_layers(layers, lm.n_layers)
    result = ops.classifier_probe(lm, data, tests, chosen, seed, batch_size)
    _save(output, "introspect.classifier", result, lm, probe_accuracy_figure(result), probe_table(result),
          model=model, layers=layers, seed=seed, batch_size=batch_size, task=task)  # fmt: skip


@introspect.command("logit-lens")
def logit_lens_cmd(
    output: OutputOpt,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt (default: --task\'s held-out prompts)') = None,
    targets: option(Optional[list[str]], "--targets", help="target word (repeat per target; default: --task's)") = None,
    task: TaskOpt = None,
    model: ModelOpt = "default",
    layer: flag(int, "--layer", help="lens layer (default: int(0.55 * n_layers))") = None,
    all_layers: option(
        bool, "--all-layers", help="also record each target's probability and rank at every layer"
    ) = False,
    expected: flag(str, "--expected", help='expected target per prompt, "w1|w2" (default: from the operator)') = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    adapter: AdapterOpt = None,
):
    """Logit lens: are the target words readable through the vocabulary at a mid layer?"""
    from ..core.results import check_writable
    from ..core.tasks import parse_prompt_list

    expected_list = parse_prompt_list(expected, "--expected") if expected else None
    if task:
        from ..tasks.data import lens_set

        task_prompts, task_targets, task_expected = lens_set(task)
        prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
        targets = targets or task_targets
        expected_list = expected_list or (task_expected if not prompts else None)
    elif prompts and targets:
        prompt_list = parse_prompt_list(prompts, "--prompts")
    else:
        raise WorkbenchError('give --prompts "p1|p2" and --targets WORD (repeat per target), or --task NAME')
    check_writable(output)
    from ..core import readouts as ops
    from ..core.models import load_model
    from ..ui.plots import lens_heatmap_figure, lens_layer_figure, start_png_export

    start_png_export()
    lm = load_model(model, device, adapter, dtype, device_map, batch_size)
    if task:
        from ..tasks.data import check_class_words
        from ..tasks.spec import load_task

        check_class_words(load_task(task), lm.tokenizer)
    result = ops.lens_readout(lm, prompt_list, targets, layer, all_layers, expected_list, batch_size)
    figure = lens_heatmap_figure(result) if all_layers else lens_layer_figure(result)
    _save(output, "introspect.logit_lens", result, lm, figure, lens_table(result), model=model, layer=layer,
          all_layers=all_layers, expected=expected_list, batch_size=batch_size, task=task)  # fmt: skip


@introspect.command("readouts")
def readouts_cmd(
    output: OutputOpt,
    task: TaskOpt = None,
    model: ModelOpt = "default",
    layers: LayersOpt = "all",
    readouts: option(
        str, "--readouts", help="comma-separated: logit,shortcut,tuned,jacobian,patchscope,unembed_probe"
    ) = ("logit,shortcut,tuned,patchscope,unembed_probe"),
    n_eval: option(int, "--n-eval", min=1, help="held-out prompts scored") = 64,
    n_fit: option(int, "--n-fit", min=2, help="training prompts the probe through the unembedding is fitted on") = 64,
    corpus_tokens: option(
        int, "--corpus-tokens", min=1, help="offline-prose positions the shortcut and tuned lens fit on"
    ) = 8192,
    tuned_steps: option(int, "--tuned-steps", min=0, help="Adam steps of the tuned lens") = 200,
    tuned: flag(Path, "--tuned", help="a saved tuned-lens folder (instead of training one here)") = None,
    jacobian_prompts: option(int, "--jacobian-prompts", min=1, help="training prompts the Jacobian lens averages") = 8,
    steer: option(
        float,
        "--steer",
        min=0.0,
        help="also steer each class pair at each layer at this strength (x median norm; 0: no)",
    ) = 0.0,
    n_controls: option(int, "--n-controls", min=1, help="norm-matched random directions per steering cell") = 4,
    seed: SeedOpt = 42,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    adapter: AdapterOpt = None,
):
    """The readout ladder: the class word read at every layer through the logit lens, the linear shortcut, the tuned
    lens, the Jacobian lens, Patchscope and a probe through the unembedding."""
    from ..core.layers import parse_layers
    from ..core.results import check_writable
    from ..experiment.readouts import LadderSettings, measure
    from ..lenses.ladder import READOUTS
    from ..lenses.tuned import PROVENANCE_FILE
    from ..tasks.spec import load_task

    chosen = tuple(r.strip() for r in readouts.split(",") if r.strip())
    unknown = [r for r in chosen if r not in READOUTS]
    if unknown or not chosen:
        raise WorkbenchError(f"--readouts {readouts!r}: choose from {', '.join(READOUTS)}")
    if tuned is not None and not (tuned / PROVENANCE_FILE).is_file():
        raise WorkbenchError(
            f"--tuned {str(tuned)!r} is not a saved tuned lens folder: train one, or leave --tuned out"
        )
    spec = load_task(task)
    check_writable(output)
    from ..core.models import load_model

    settings = LadderSettings(chosen, n_eval, n_fit, corpus_tokens, tuned_steps, str(tuned) if tuned else None,
                              jacobian_prompts, steer, n_controls, seed)  # fmt: skip
    lm = load_model(model, device, adapter, dtype)
    chosen_layers = parse_layers(layers, lm.n_layers)
    result = measure(lm, spec, chosen_layers, settings)
    _save(output, "introspect.readouts", result, lm, None, ladder_table(result), model=model, task=spec.name,
          layers=chosen_layers, **settings.record())  # fmt: skip

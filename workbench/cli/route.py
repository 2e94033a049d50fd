"""`workbench route`: virtual experts at runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._app import AdapterOpt, DeviceOpt, DtypeOpt, ModelOpt, app, flag, option
from .formatters import route_eval_summary

# route's options with a longer help, named here so that the signature stays one line an option
EvalOpt = option(bool, "--eval", help="score on the built-in routing set (symbols, words, mixed, negatives)")
FitOpt = flag(Path, "--fit", help="fit the probe/direction router on the built-in training prompts, save it here")
RouterLayerOpt = flag(int, "--layer", help="layer the router reads (default: the classifier layer, int(0.55 x layers))")
RouteOutputOpt = flag(
    Path, "--output", "-o", help="result JSON: every decision, answer and timing, and --eval's scores"
)


@app.command("route")
def route_cmd(
    router: option(str, "--router", help="probe | lens | direction | regex | neural"),
    model: ModelOpt = "default",
    adapter: AdapterOpt = None,
    prompts: flag(str, "--prompts", help='"p1|p2" or @file.txt: prompts to route and answer') = None,
    evaluate: EvalOpt = False,
    per_kind: option(int, "--per-kind", min=1, help="--eval: arithmetic prompts per phrasing") = 40,
    negatives_task: flag(str, "--negatives-task", help="--eval: add 40 prompts of this task as negatives") = None,
    router_file: flag(Path, "--router-file", help="a fitted probe/direction router (JSON) to load") = None,
    fit: FitOpt = None,
    layer: RouterLayerOpt = None,
    threshold: option(float, "--threshold", help="lens: below this class-word probability the model answers") = 0.5,
    expert: flag(str, "--expert", help="module:function answering routed prompts (default: the calculator)") = None,
    timeout: option(float, "--timeout", min=0.001, help="seconds an expert may take") = 5.0,
    max_new_tokens: option(int, "--max-new-tokens", min=1, help="tokens of a model answer") = 8,
    seed: option(int, "--seed", help="seed of the training prompts a fitted router learns from") = 0,
    output: RouteOutputOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
):
    """Virtual experts: a router reads the prompt (probe/lens/direction stop at their layer) and the calculator or the
    model answers. Prints one JSON line per prompt: decision, confidence, expert, answer, timings."""
    from ..core.results import check_writable
    from ..core.tasks import parse_prompt_list
    from ..routing.options import check_route_options

    check_route_options(router, prompts, evaluate, fit, router_file, adapter, threshold)
    texts = parse_prompt_list(prompts, "--prompts") if prompts is not None else None
    for path in (fit, output):
        if path is not None:
            check_writable(path)
    from ..routing import experts as expert_lib

    answer_with = expert_lib.load_expert(expert) if expert else expert_lib.calculator
    extra = []
    if negatives_task:
        from ..routing.prompts import task_negatives

        extra = task_negatives(negatives_task)
    from ..core.models import load_model
    from ..core.results import write_result
    from ..routing import prompts as route_prompts
    from ..routing.routers import build_router
    from ..routing.virtual import evaluate as evaluate_router
    from ..routing.virtual import route_all

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
        print(route_eval_summary(router, result["metrics"]), file=sys.stderr)
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

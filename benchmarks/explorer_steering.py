"""Layer explorer, steering tab: time from a steering-slider change to the updated view, and, separately, the greedy
answers behind their button.

Contenders, on the embedded model, the guide's four lens prompts and targets (the first prompt shown), the direction
``unembed:multiply`` added after the classifier layer:

  slider    LayerExplorer.steer_strength.value = s   one steered forward pass (the direction, s x the layer's median
                                                      residual norm, added at every position), the lens of the layers
                                                      it changes (from the steered one on), the figure and the label:
                                                      no generation
  generate  LayerExplorer.generate()                 the steered greedy answer, --max-new-tokens tokens (the unsteered
                                                      one is generated once and kept)
  forward   capture_positions(lm, prompt)            the plain forward pass of the prompt, for scale: the one cost a
                                                      slider change cannot avoid (slider / forward is the view's
                                                      overhead over it, a ratio that survives a busy machine)

The strength takes a new value every round, so every slider round is a change (the layer's norm and the direction
are computed once, before the timed rounds, as a first visit to the tab does). A hook on the embedding counts the
forward passes each slider change makes (greedy decoding makes one per token): exactly 1 per change means no
generation hides in the slider path.
Target: median(slider) <= 300 ms on the embedded model on the CPU. The browser adds its own rendering on top:
tests/test_browser.py measures key press -> updated page and writes test-artifacts/layer_explorer_steering_latency.json.

    .venv/bin/python benchmarks/explorer_steering.py [--quick] [--check] [--reps N] [--device cpu] [--model default]
        [--max-new-tokens 8] [--json PATH]
"""

from __future__ import annotations

import itertools
import sys

import _bench

TARGET_MS = 300.0
STRENGTHS = (0.5, 1.0, -0.5, 1.5, -1.0, 2.0)


def build_parser():
    p = _bench.parser(__doc__.splitlines()[0], reps=11, quick_reps=3)
    p.add_argument("--model", default="default", help="model spec (default: the embedded SmolLM2-135M)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="length of the greedy answers")
    p.add_argument("--json", default=None, help="also write the numbers here (atomic)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    reps = _bench.n_reps(args)

    from workbench.core.activations import capture_positions
    from workbench.core.guide import LENS_PROMPTS, TARGETS
    from workbench.core.models import load_model
    from workbench.ui.widgets import TAB_STEER, LayerExplorer

    lm = load_model(args.model, device=args.device)
    timed = _bench.make_timer(lm.device)
    ex = LayerExplorer(lm, prompts=LENS_PROMPTS, targets=TARGETS, max_new_tokens=args.max_new_tokens)
    ex.show(TAB_STEER)  # the first visit: the layer's median norm, the direction, the unsteered view
    strengths = itertools.cycle(STRENGTHS)
    passes: list[int] = []
    per_change: list[int] = []

    def slider():
        before = len(passes)
        ex.steer_strength.value = next(strengths)
        per_change.append(len(passes) - before)

    def generate():
        return ex.generate()

    def forward():
        return capture_positions(lm, ex.prompt)

    with lm.bridge.hooks(fwd_hooks=[("hook_embed", lambda act, hook: passes.append(1))]):
        times = _bench.interleaved(
            {"slider": slider, "generate": generate, "forward": forward}, reps=reps, warmup=2, timed=timed
        )
    slider_ms = 1000 * _bench.median(times["slider"])
    generate_ms = 1000 * _bench.median(times["generate"])
    ratio = _bench.median(times["slider"]) / _bench.median(times["forward"])
    paired = _bench.median(_bench.paired_ratios(times["slider"], times["forward"]))
    no_generation = set(per_change) == {1}

    print(_bench.machine_line(lm.device))
    print(
        f"prompt {ex.prompt!r}, direction {ex.steer_direction.value} after layer {ex.steer_layer.value} of "
        f"{lm.n_layers}, strengths {', '.join(map(str, STRENGTHS))} in turn, {reps} interleaved rounds after 2 warm-up "
        f"rounds; {_bench.load_average()}"
    )
    print()
    _bench.print_times(times)
    print()
    print(f"steering slider -> updated view: median {slider_ms:.1f} ms   target <= {TARGET_MS:.0f} ms")
    print(
        f"forward passes per slider change: {sorted(set(per_change))} "
        f"({'1 each: no generation' if no_generation else 'NOT 1: something else ran'})"
    )
    print(f"slider / forward (median/median) = {ratio:.3f}; median of per-round ratios {paired:.3f} (for information)")
    print(f"greedy answers ({args.max_new_tokens} new tokens, steered): median {generate_ms:.1f} ms")
    ok = slider_ms <= TARGET_MS and no_generation
    result = {
        "model": lm.model_id,
        "device": lm.device,
        "reps": reps,
        "direction": ex.steer_direction.value,
        "layer": ex.steer_layer.value,
        "max_new_tokens": args.max_new_tokens,
        "slider_s": times["slider"],
        "generate_s": times["generate"],
        "forward_s": times["forward"],
        "slider_over_forward": ratio,
        "slider_median_ms": slider_ms,
        "generate_median_ms": generate_ms,
        "passes_per_slider_change": per_change,
        "generations": ex.generations,
        "target_ms": TARGET_MS,
        "ok": ok,
        "check": args.check,
    }
    if args.json:
        from workbench.core.results import write_json

        write_json(args.json, result)
        print(f"wrote {args.json}")
    print(
        f"SUMMARY explorer_steering: slider {slider_ms:.1f} ms (target <= {TARGET_MS:.0f}): "
        f"{'MET' if slider_ms <= TARGET_MS else 'MISSED'}, passes per change {sorted(set(per_change))}, "
        f"slider/forward {ratio:.2f}; "
        f"generate {generate_ms:.1f} ms ({args.max_new_tokens} tokens); {reps} reps, device {lm.device}"
    )
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if outcome["check"] and not outcome["ok"] else 0)

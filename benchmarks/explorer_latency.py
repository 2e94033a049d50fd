"""Layer explorer: time from a slider change to the updated view, and for a new prompt, side by side.

Contenders, on the embedded model, the guide's four lens targets, one prompt:

  slider      LayerExplorer.layer_slider.value = L   lens from the cached residuals, table, figure line (what the
                                                     explorer does when the slider moves)
  recompute   logit_lens(lm, [prompt], targets, L)   a forward pass and the lens (what a cell without the cache does)
  new prompt  LayerExplorer.prompt_box.value = P     one forward pass, the trajectory over all layers, the view

The layer alternates between two values so every round is a real change; each new-prompt round uses a prompt not
seen before. Targets: median(slider) <= 300 ms, and slider / recompute <= 0.5 (the cache must pay for itself).
The browser adds its own rendering on top: tests/test_browser.py measures key press -> updated page in Chromium and
writes test-artifacts/layer_explorer_latency.json.

    .venv/bin/python benchmarks/explorer_latency.py [--quick] [--check] [--reps N] [--device cpu]
"""

from __future__ import annotations

import itertools

import _bench

TARGET_MS = 300.0
TARGET_RATIO = 0.5
TARGETS = ["multiply", "add", "subtract", "divide"]


def main() -> None:
    args = _bench.parser(__doc__.splitlines()[0], reps=21, quick_reps=5).parse_args()
    reps = _bench.n_reps(args)

    from workbench.core.lens import logit_lens
    from workbench.core.models import load_model
    from workbench.ui.widgets import LayerExplorer

    lm = load_model("default", device=args.device)
    timed = _bench.make_timer(lm.device)
    prompt = "7 * 8 = "
    ex = LayerExplorer(lm, prompts=[prompt], targets=TARGETS)
    slider_layers = itertools.cycle([lm.classifier_layer + 1, lm.classifier_layer])  # starts away from the current
    lens_layers = itertools.cycle([lm.classifier_layer, lm.classifier_layer + 1])
    fresh = iter(_bench.arithmetic_prompts(10 * reps + 20, seed=7))

    def slider():
        ex.layer_slider.value = next(slider_layers)

    def recompute():
        return logit_lens(lm, [prompt], TARGETS, layer=next(lens_layers))

    def new_prompt():
        ex.prompt_box.value = next(fresh)

    passes = ex.views["base model"].forward_passes
    times = _bench.interleaved(
        {"slider": slider, "recompute": recompute, "new prompt": new_prompt}, reps=reps, warmup=2, timed=timed
    )
    slider_passes = ex.views["base model"].forward_passes - passes - (reps + 2)  # new-prompt rounds run one each

    print(_bench.machine_line(lm.device))
    print(
        f"prompt {prompt!r}, layers {lm.classifier_layer}/{lm.classifier_layer + 1} alternating, {reps} interleaved "
        f"rounds after 2 warm-up rounds; forward passes caused by slider moves: {slider_passes}; {_bench.load_average()}"
    )
    print()
    _bench.print_times(times)
    slider_ms = 1000 * _bench.median(times["slider"])
    ratio = _bench.median(times["slider"]) / _bench.median(times["recompute"])
    print()
    print(f"slider -> updated view: median {slider_ms:.1f} ms   target <= {TARGET_MS:.0f} ms")
    print(f"slider / recompute (median/median) = {ratio:.3f}   target <= {TARGET_RATIO}")
    print(f"new prompt -> updated view: median {1000 * _bench.median(times['new prompt']):.1f} ms")
    ok = slider_ms <= TARGET_MS and ratio <= TARGET_RATIO and slider_passes == 0
    _bench.finish(
        f"SUMMARY explorer_latency: slider {slider_ms:.1f} ms (target <= {TARGET_MS:.0f}), "
        f"{_bench.verdict('slider/recompute', ratio, f'<= {TARGET_RATIO}', ratio <= TARGET_RATIO)}; new prompt "
        f"{1000 * _bench.median(times['new prompt']):.1f} ms; {reps} reps, device {lm.device}",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()

"""`workbench introspect classifier` end to end on the guide's four classes, and where the seconds go.

In this process, calling the same functions the CLI calls, in the CLI's order:

  import        torch, transformers, transformer_lens (the bridge), then the workbench modules the command
                uses (cli, introspect -> activations/probes/lens, models, plots, results, tasks); timed once,
                first thing in the process, so it is a real first import (with the OS file cache warm)
  parse         workbench.core.tasks.parse_classes / parse_prompt_list on the guide's strings
  model load    workbench.core.models.load_model("default") from the warm safetensors cache (HF load + bridge boot)
  forward       capture of all 30 residuals for 16 class + 4 test prompts (classifier_probe's timings_s)
  probe fit     per-layer logistic-regression CV, control task, test predictions (classifier_probe's timings_s;
                all 510 fits in one batched solve: benchmarks/probe_fit.py compares it with sklearn's)
  write         write_result (JSON) + write_figure (HTML, and the PNG when a Chromium is found), as the CLI
                does

Round 1 is what a fresh CLI process pays; later rounds (model load .. write repeated in the same process) give
medians of the warm pieces. Then the real CLI runs once as a subprocess for the end-to-end total.
There is no ratio target here: the script reports, it does not judge (``--check`` never fails on time; it
fails only if the CLI run itself fails).

    .venv/bin/python benchmarks/classifier_e2e.py [--quick] [--reps N] [--device cpu] [--prewarm-png]

``--prewarm-png`` measures the in-process pieces as they would be if the CLI started the PNG browser before
loading the model (the real CLI subprocess runs as it is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench  # noqa: I001  (sets HF_HUB_* before anything imports huggingface_hub)

# The guide's command (CLASSIFIER_EXPERIMENTS_GUIDE.md, "1. Hidden-state classifier").
CLASSES = [
    "multiply:7 * 8 = |12 * 5 = |3 * 9 = |6 * 7 = ",
    "add:23 + 45 = |17 + 38 = |11 + 22 = |5 + 9 = ",
    "subtract:50 - 23 = |89 - 34 = |77 - 11 = |40 - 15 = ",
    "divide:48 / 6 = |81 / 9 = |36 / 4 = |24 / 3 = ",
]
TEST = "11 * 12 = |6 * 9 = |13 + 14 = |25 + 17 = "
PIECES = ("parse", "model load", "forward", "probe fit", "write")


def time_imports() -> dict[str, float]:
    """First imports, in dependency order, so each row is the increment over the rows above it."""
    steps = {}
    t = time.perf_counter()
    import torch  # noqa: F401

    steps["import torch"] = time.perf_counter() - t
    t = time.perf_counter()
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy modules: resolve them)

    steps["import transformers"] = time.perf_counter() - t
    t = time.perf_counter()
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401  (what models.boot_bridge imports)

    steps["import transformer_lens"] = time.perf_counter() - t
    t = time.perf_counter()
    import workbench.cli  # noqa: F401
    import workbench.core.models  # noqa: F401
    import workbench.core.readouts  # noqa: F401
    import workbench.core.results  # noqa: F401
    import workbench.core.tasks  # noqa: F401
    import workbench.ui.plots  # noqa: F401

    steps["import workbench (+ sklearn, plotly, typer)"] = time.perf_counter() - t
    return steps


def cli_command(output: Path) -> list[str]:
    script = Path(sys.executable).with_name("workbench")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "workbench.cli"]
    cmd = head + ["introspect", "classifier"]
    for spec in CLASSES:
        cmd += ["--classes", spec]
    return cmd + ["--test", TEST, "--output", str(output)]


def main() -> None:
    p = _bench.parser(__doc__.splitlines()[0], reps=3, quick_reps=1)
    p.add_argument(
        "--prewarm-png",
        action="store_true",
        help="start the PNG browser (plots.start_png_export) before the model load, so it overlaps the work",
    )
    args = p.parse_args()
    reps = _bench.n_reps(args)
    imports = time_imports()

    from workbench.core import readouts as ops
    from workbench.core.model_sources import embedded_cache_dir
    from workbench.core.models import load_model
    from workbench.core.results import write_result
    from workbench.core.tasks import parse_classes, parse_prompt_list
    from workbench.ui.plots import probe_accuracy_figure, start_png_export, write_figure

    workdir = Path(tempfile.mkdtemp(prefix="wb-bench-e2e-"))
    try:
        cache_was_warm = (embedded_cache_dir() / "model.safetensors").is_file()
        if not cache_was_warm:  # fill it outside the timings: the benchmark is about a warm cache
            print(f"model cache {embedded_cache_dir()} is empty: filling it first (not timed)")
            load_model("default", device=args.device)

        rounds: list[dict[str, float]] = []

        def one_round(i: int) -> None:
            t = {}
            t0 = time.perf_counter()
            if args.prewarm_png:
                start_png_export()
            data = parse_classes(CLASSES)
            tests = parse_prompt_list(TEST, "--test")
            t["parse"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            lm = load_model("default", device=args.device)
            t["model load"] = time.perf_counter() - t0
            result = ops.classifier_probe(lm, data, tests, None, 0, 64)
            t["forward"] = result["timings_s"]["forward"]
            t["probe fit"] = result["timings_s"]["probe_fit"]
            t0 = time.perf_counter()
            out = workdir / f"inproc-{i}.json"
            write_result(out, "introspect.classifier", result, {"model": "default", "layers": "all", "seed": 0})
            write_figure(probe_accuracy_figure(result), out.with_suffix(".html"))
            t["write"] = time.perf_counter() - t0
            rounds.append(t)
            if i == 0:
                one_round.device = lm.device
                one_round.best = (result["best_layer"], result["best_accuracy"])

        one_round(0)

        # The real CLI once, as a user runs it (a fresh interpreter; OS file cache and model cache warm).
        cmd = cli_command(workdir / "cli" / "classifier.json")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        cli_total = time.perf_counter() - t0

        for i in range(1, reps):
            one_round(i)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    device = one_round.device
    print(_bench.machine_line(device))
    print(
        f"model cache: {embedded_cache_dir()} ({'warm' if cache_was_warm else 'filled before timing'}); "
        f"{len(rounds)} in-process round(s); {_bench.load_average()}"
    )
    print(f"probe result: best layer {one_round.best[0]}, accuracy {one_round.best[1]:.3f}")
    print()

    import_total = sum(imports.values())
    first = {p: rounds[0][p] for p in PIECES}
    med = {p: _bench.median([r[p] for r in rounds]) for p in PIECES}
    inproc_total = import_total + sum(first.values())

    print(f"{'piece':<44}  {'round 1 s':>9}  {'share':>6}  {'median s':>9}")
    for name, secs in imports.items():
        print(f"  {name:<42}  {secs:>9.3f}  {secs / inproc_total:>6.1%}  {'':>9}")
    print(f"{'import (total)':<44}  {import_total:>9.3f}  {import_total / inproc_total:>6.1%}  {'':>9}")
    for p in PIECES:
        print(f"{p:<44}  {first[p]:>9.3f}  {first[p] / inproc_total:>6.1%}  {med[p]:>9.3f}")
    print(f"{'in-process total (import + round 1)':<44}  {inproc_total:>9.3f}  {1:>6.1%}")
    print()
    if proc.returncode != 0:
        print(f"CLI FAILED (exit {proc.returncode}): {' '.join(cmd[:3])} ...")
        print(proc.stderr[-2000:])
        _bench.finish("SUMMARY classifier_e2e: the CLI run failed", False, True)
    rest = cli_total - inproc_total
    print(
        f"real CLI as a subprocess (once): {cli_total:.3f} s  = in-process pieces {inproc_total:.3f} s "
        f"+ interpreter start, CLI parsing and the rest {rest:+.3f} s ({rest / cli_total:+.1%})"
    )
    print(
        f"CLI shares: import {import_total / cli_total:.1%}, model load {first['model load'] / cli_total:.1%}, "
        f"forward {first['forward'] / cli_total:.1%}, probe fit {first['probe fit'] / cli_total:.1%}, "
        f"write {first['write'] / cli_total:.1%}, rest {rest / cli_total:.1%} (pieces from in-process round 1)"
    )
    biggest = max([("import", import_total)] + [(p, first[p]) for p in PIECES], key=lambda kv: kv[1])
    _bench.finish(
        f"SUMMARY classifier_e2e: CLI {cli_total:.2f}s end to end; in-process import {import_total:.2f}s, "
        f"model load {first['model load']:.2f}s, forward {first['forward']:.2f}s, probe fit {first['probe fit']:.2f}s, "
        f"write {first['write']:.2f}s; largest piece: {biggest[0]} ({biggest[1] / cli_total:.0%} of the CLI total); "
        f"device {device}",
        True,
        args.check,
    )


if __name__ == "__main__":
    main()

"""The GPU section of docs/performance.md: what `benchmarks/gpu_check.sh` measured on a GPU machine, as one record
(``gpu_record``: the environment, each step's status, the training-throughput results and the benchmarks' SUMMARY
lines) and the markdown `workbench publish` renders from it (``page_text``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

CONTENDERS = ("bridge", "hf_eager", "hf_sdpa")  # benchmarks/train_throughput.py's, in its order


def _summary_of(log: Path) -> str | None:
    if not log.is_file():
        return None
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("SUMMARY")]
    return lines[-1] if lines else None


def gpu_record(out: str | Path, where: str) -> dict:
    """What gpu_check.sh left in ``out`` (env.json, steps.tsv, tt_*.json, capture.log, greedy.log) as one record;
    ``where``: how the docs name that folder."""
    out = Path(out)
    steps = []
    if (out / "steps.tsv").is_file():
        steps = [x.split("\t") for x in (out / "steps.tsv").read_text().splitlines() if x.strip()]
    keep = ("model", "dtype", "memory_method", "results", "ratios")
    return {
        "env": json.loads((out / "env.json").read_text()) if (out / "env.json").is_file() else {},
        "steps": [s for s in steps if len(s) >= 4],
        "throughput": [{k: json.loads(p.read_text()).get(k) for k in keep} for p in sorted(out.glob("tt_*.json"))],
        "summaries": {name: _summary_of(out / f"{name}.log") for name in ("capture", "greedy")},
        "where": where,
    }


def _ratio_in(summary: str | None, name: str) -> str:
    """The value of ``name = 0.123`` in a SUMMARY line (as benchmarks/_bench.verdict writes it), else '-'."""
    match = re.search(re.escape(name) + r" = ([0-9.]+)", summary or "")
    return match.group(1) if match else "-"


def _mib(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def page_text(record: dict) -> str:
    """The GPU section: the run's environment, the steps, the throughput table and the capture ratio."""
    env = record["env"]
    lines = ["## GPU (benchmarks/gpu_check.sh)", ""]
    if env.get("dry"):
        lines += [
            "**Dry run on the CPU** (`GPU_CHECK_DRY=1`): it proves the script's plumbing and this table's writer; "
            "the numbers are not GPU numbers. No GPU session has run the check yet.",
            "",
        ]
    lines.append(
        f"Run {env.get('date', '?')} at commit {env.get('commit', '?')}: {env.get('gpu') or 'no GPU'}, "
        f"torch {env.get('torch', '?')} (CUDA {env.get('cuda') or 'none'}), transformers {env.get('transformers', '?')}, "
        f"TransformerLens {env.get('transformer_lens', '?')}, peft {env.get('peft', '?')}; dtype {env.get('dtype', '?')}."
    )
    lines.append("")
    if record["steps"]:
        lines += ["| step | status | exit | seconds |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {s[0]} | {s[1]} | {s[2]} | {s[3]} |" for s in record["steps"]]
        lines.append("")
    rows, methods = [], set()
    for res in record["throughput"]:
        methods.add(res.get("memory_method") or "not measured")
        by = {(r["length"], r["contender"]): r for r in res["results"]}
        for ratio in res["ratios"]:
            n = ratio["length"]
            tps = [by.get((n, c), {}).get("tokens_per_s") for c in CONTENDERS]
            mem = [by.get((n, c), {}).get("step_peak_mib") for c in CONTENDERS]
            rows.append(
                f"| {res['model']} | {res['dtype']} | {n} | "
                + " | ".join("-" if t is None else f"{t:,.0f}" for t in tps)
                + f" | {ratio['bridge_over_hf_eager']:.3f} | {ratio['bridge_over_hf_sdpa']:.3f} | "
                + " / ".join(_mib(m) for m in mem)
                + " |"
            )
    if rows:
        lines += [
            "Training step (LoRA r=16 on v_proj,o_proj, dual-reward loss, AdamW), batch 1; tokens/s per contender; "
            f"step peak memory: {'; '.join(sorted(methods))}.",
            "",
            "| model | dtype | length | bridge tok/s | hf_eager tok/s | hf_sdpa tok/s | bridge/hf_eager | bridge/hf_sdpa "
            "| step peak MiB (bridge / eager / sdpa) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
            "",
        ]
    else:
        lines += ["No throughput results (see the steps above).", ""]
    capture, greedy = record["summaries"]["capture"], record["summaries"]["greedy"]
    lines.append(f"capture / hf (capture_vs_hf.py): {_ratio_in(capture, 'capture/hf')}")
    lines.append("")
    for name, summary in (("capture_vs_hf", capture), ("greedy_decoding", greedy)):
        lines.append(f"- {name}: `{summary}`" if summary else f"- {name}: no SUMMARY line (see the step status)")
    lines += ["", f"Raw results: `{record['where']}` on the machine that ran it (JSON per model, one log per step)."]
    return "\n".join(lines)

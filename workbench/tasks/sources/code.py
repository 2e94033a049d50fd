"""Code: windows of real source code in five languages."""

from __future__ import annotations

import ast
import io
import os
import platform
import random
import re
import sysconfig
import textwrap
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import WorkbenchError
from ._fetching import (
    _HINTS,
    _apt_extract,
    _current,
    _find,
    _note_version,
    _run,
    _say,
)

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

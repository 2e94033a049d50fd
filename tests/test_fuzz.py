"""Hypothesis fuzzing of every parser: the `label:p|p` class spec, prompt lists and `@file` lists, layer and freeze
ranges, YAML configs, JSONL data, verification thresholds, and the CLI in front of them. Whatever the input, the result
is either a value that satisfies the parser's promises or one WorkbenchError line that names the input; the CLI turns
it into one `error:` line on stderr with exit status 2, no traceback, and writes no output file.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.core.data import read_jsonl
from workbench.core.errors import WorkbenchError
from workbench.core.guide import THRESHOLDS
from workbench.core.layers import parse_layers
from workbench.core.tasks import parse_classes, parse_prompt_list
from workbench.experiment.claims import parse_threshold
from workbench.training.config import TrainConfig, load_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# The characters the syntaxes care about, plus whitespace, unicode and control characters.
PIECES = st.sampled_from(list("ab:|@ \t\r\n*+-/=,0123456789") + ["é", "中", "\x00", "\u2028", "all", "7 * 8 = "])
TEXT = st.lists(PIECES, max_size=24).map("".join)


def _one_line(exc: WorkbenchError) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


@FUZZ
@given(st.lists(TEXT, max_size=5))
def test_class_specs(specs):
    try:
        data = parse_classes(specs)
    except WorkbenchError as exc:
        _one_line(exc)
        return
    groups = data.by_class()
    assert len(groups) >= 2 and min(len(p) for p in groups.values()) >= 2
    assert len(set(data.prompts)) == len(data.prompts) and all(p.strip() for p in data.prompts)
    assert all(label and ":" not in label and label == label.strip() for label in groups)


@FUZZ
@given(TEXT)
def test_prompt_lists(text):
    try:
        prompts = parse_prompt_list(text)
    except WorkbenchError as exc:
        _one_line(exc)
        return
    assert prompts and all(p.strip() for p in prompts)
    if not text.startswith("@"):
        assert "|".join(prompts) == text  # nothing trimmed: trailing spaces are part of a prompt


@FUZZ
@given(st.lists(st.sampled_from(["", " ", "\n", "\r\n", "7 * 8 = ", "é ", "\t", "a|b"]), max_size=8))
def test_prompt_files(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("lists") / "prompts.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        prompts = parse_prompt_list(f"@{path}")
    except WorkbenchError as exc:
        assert str(path) in _one_line(exc)
        return
    assert prompts == [line.rstrip("\r\n") for line in "\n".join(lines).splitlines() if line.strip()]


@FUZZ
@given(
    st.lists(st.sampled_from(list("0123456789-, ") + ["all", "x", "10", "-1"]), max_size=10).map("".join),
    st.integers(1, 40),
)
def test_layer_and_freeze_ranges(text, n_layers):
    try:
        layers = parse_layers(text, n_layers)
    except WorkbenchError as exc:
        _one_line(exc)
        return
    assert layers == sorted(set(layers)) and all(0 <= layer < n_layers for layer in layers)
    if text.strip().lower() != "all":
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        assert set(numbers) <= set(layers)  # every layer named is there; ranges fill in between


KEYS = st.sampled_from(list(TrainConfig.model_fields) + ["learning_rte", "lora", "intermediate_loss", "freeze"])
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_yaml_configs(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    try:
        cfg = load_config(path)
    except WorkbenchError as exc:
        assert "c.yaml" in _one_line(exc)
        return
    assert set(values) <= set(TrainConfig.model_fields)  # a misspelt key is never accepted silently
    assert cfg.max_steps is None or cfg.max_steps >= 1


@FUZZ
@given(TEXT)
def test_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "raw.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except WorkbenchError as exc:
        assert "raw.yaml" in _one_line(exc)


RECORD = st.fixed_dictionaries({"prompt": TEXT, "response": TEXT})
LINE = st.one_of(
    RECORD.map(json.dumps),
    RECORD.map(lambda r: json.dumps(r, ensure_ascii=False)),  # raw U+2028 too
    TEXT.filter(lambda t: "\n" not in t and "\r" not in t),
    st.just("[1, 2]"),
    st.just('{"prompt": 3}'),
    st.just(""),
)


@FUZZ
@given(st.lists(LINE, max_size=6))
def test_jsonl_data(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("data") / "d.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        records = read_jsonl(path)
    except WorkbenchError as exc:
        message = _one_line(exc)
        assert "d.jsonl" in message
        line = re.search(r"d\.jsonl:(\d+):", message)
        if line:  # the line it names is a bad one
            bad = lines[int(line.group(1)) - 1]
            assert bad.strip()
            try:
                doc = json.loads(bad)
            except json.JSONDecodeError:
                return
            assert not (
                isinstance(doc, dict) and all(isinstance(doc.get(k), str) and doc[k] for k in ("prompt", "response"))
            )
        return
    assert records == [json.loads(line) for line in lines if line.strip()]  # every non-blank line, as written
    assert all(r["prompt"] and r["response"] for r in records)


# NAME=VALUE around the real names too, so that the parse also succeeds
OVERRIDE = st.tuples(
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(list(THRESHOLDS)),
    st.sampled_from(["=", " = ", "=\t"]),
    st.one_of(st.floats(allow_nan=False).map(str), st.integers(-5, 100).map(str), TEXT),
).map("".join)


@FUZZ
@given(st.one_of(TEXT, OVERRIDE))
def test_threshold_overrides(text):
    try:
        name, value = parse_threshold(text)
    except WorkbenchError as exc:
        _one_line(exc)
        return
    written, _, number = text.partition("=")
    assert name == written.strip() and name in THRESHOLDS and value == float(number)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TEXT, min_size=1, max_size=3), TEXT)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path_factory, capsys, specs, layers):
    """The CLI in front of the parsers (an unloadable model, so a valid spec ends at the model): always exit 2,
    one line, and the output file never appears."""
    out = tmp_path_factory.mktemp("cli") / "out.json"
    args = ["introspect", "classifier", "-m", str(out.parent / "no-model"), "--layers", layers, "--output", str(out)]
    for spec in specs:
        args += ["--classes", spec]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not out.exists() and not list(out.parent.glob(".out.json*"))

"""The guide's arithmetic SFT data: generator, and the JSONL and YAML readers every input file goes through (a broken
line is reported by file and line number)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from .errors import WorkbenchError
from .guide import DATA_SEED, EVAL_SAMPLES, OPERATIONS, TRAIN_SAMPLES
from .results import atomic_write_text

SYMBOLS = {"multiply": "*", "add": "+", "subtract": "-", "divide": "/"}
HELD_OUT_SEED = 1234  # evaluation prompts come from another seed than the training data's 42


def make_example(op: str, a: int, b: int) -> dict:
    answer = {"multiply": a * b, "add": a + b, "subtract": a - b, "divide": a // b}[op]
    return {
        "prompt": f"{a} {SYMBOLS[op]} {b} = ",
        "response": str(answer),
        "operation": op,
        "classification_target": op,
    }


def generate_arithmetic(samples: int = TRAIN_SAMPLES, seed: int = DATA_SEED) -> list[dict]:
    """The seed generator's distribution: op uniform; * and + in [1, 50]; a - b with 10<=a<=100, 1<=b<=a;
    a / b exact with b in [1, 12] and quotient in [1, 12]."""
    rng = random.Random(seed)
    out = []
    for _ in range(samples):
        op = rng.choice(OPERATIONS)
        if op in ("multiply", "add"):
            a, b = rng.randint(1, 50), rng.randint(1, 50)
        elif op == "subtract":
            a = rng.randint(10, 100)
            b = rng.randint(1, a)
        else:
            b, k = rng.randint(1, 12), rng.randint(1, 12)
            a = b * k
        out.append(make_example(op, a, b))
    return out


_PROMPT_RE = re.compile(r"^(\d+) ([*+\-/]) (\d+) = $")
_RESULT = {"*": lambda a, b: a * b, "+": lambda a, b: a + b, "-": lambda a, b: a - b, "/": lambda a, b: a // b}


def rule_violations(records: list[dict]) -> dict[str, int]:
    """How many records break the guide generator's rules, by rule: the prompt's form, the answer, the operand ranges
    (see ``generate_arithmetic``) and the operation label."""
    bad = {"prompt not 'a op b = '": 0, "wrong answer": 0, "operand out of range": 0, "operation label": 0}
    operation = {symbol: op for op, symbol in SYMBOLS.items()}
    for r in records:
        m = _PROMPT_RE.match(r["prompt"])
        if not m:
            bad["prompt not 'a op b = '"] += 1
            continue
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        bad["wrong answer"] += (b == 0 and op == "/") or str(_RESULT[op](a, b)) != r["response"]
        bad["operand out of range"] += not (
            (op in "*+" and 1 <= a <= 50 and 1 <= b <= 50)
            or (op == "-" and 10 <= a <= 100 and 1 <= b <= a)
            or (op == "/" and 1 <= b <= 12 and a % b == 0 and 1 <= a // b <= 12)
        )
        bad["operation label"] += r.get("operation") != operation[op]
    return bad


def held_out(train: list[dict], samples: int = EVAL_SAMPLES, seed: int = HELD_OUT_SEED) -> list[dict]:
    """Examples from another seed whose prompts do not occur in ``train``."""
    seen = {r["prompt"] for r in train}
    out, taken, extra = [], set(), 0
    while len(out) < samples:
        batch = generate_arithmetic(samples * 2, seed + extra)
        fresh = [r for r in batch if r["prompt"] not in seen and r["prompt"] not in taken]
        out += fresh
        taken |= {r["prompt"] for r in fresh}  # a prompt twice in one batch stays twice, as before
        extra += 1
    return out[:samples]


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def jsonl_lines(
    path: str | Path, what: str = "data file", make: str = "create it with `workbench data generate --output {path}`"
) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for each non-blank line of a JSONL file; a missing or unreadable file or a broken
    line is one error naming file and line. ``what`` names the file in messages; ``make`` says how to create one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkbenchError(f"{what} {str(path)!r} does not exist: {make.format(path=path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read {what} {str(path)!r}: {exc}") from None
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 and friends may sit inside a record
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{path}:{n}: broken JSON ({exc.msg}): fix or delete that line") from None
        if not isinstance(record, dict):
            raise WorkbenchError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
        yield n, record


def read_jsonl(
    path: str | Path,
    required: tuple[str, ...] = ("prompt", "response"),
    *,
    allowed: tuple[str, ...] | None = None,
    what: str = "data file",
    make: str = "create it with `workbench data generate --output {path}`",
) -> list[dict]:
    """Read JSONL records (``jsonl_lines``); a missing field or (with ``allowed``) an unknown key is one error naming
    file and line, and so is a file with no records."""
    records = []
    for n, record in jsonl_lines(path, what, make):
        for key in required:
            if not isinstance(record.get(key), str) or not record[key]:
                raise WorkbenchError(
                    f"{path}:{n}: field {key!r} is missing or not a non-empty string: every line needs {list(required)}"
                )
        unknown = sorted(set(record) - {*required, *allowed}) if allowed is not None else []
        if unknown:
            raise WorkbenchError(
                f"{path}:{n}: unknown key {unknown[0]!r}: the keys are {', '.join((*required, *allowed))}"
            )
        records.append(record)
    if not records:
        raise WorkbenchError(f"{what} {str(path)!r} has no records: {make.format(path=Path(path))}")
    return records


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping (safe loader); a missing file or bad YAML is one line naming file and line."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise WorkbenchError(f"config file {str(path)!r} does not exist: check the --config path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else "check the YAML syntax there"
        raise WorkbenchError(f"{path}{where}: invalid YAML ({problem}): {fix}") from None
    if not isinstance(values, dict):
        raise WorkbenchError(f"{path}: expected a mapping of keys to values at the top level")
    return values

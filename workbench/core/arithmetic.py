"""The guide's arithmetic, one home: the generator of its SFT records (and held-out ones from another seed), the rules
those records follow, the operation a prompt's operator names, the guide's probe prompts, its RL prompts, and the
answer rule (the first integer of a completion against the exact result). The arithmetic task's source
(``tasks.sources.arithmetic``) serves these as a task's records and prompt sets."""

from __future__ import annotations

import random
import re

from . import guide
from .guide import DATA_SEED, EVAL_SAMPLES, OPERATIONS, TRAIN_SAMPLES
from .tasks import LabelledPrompts

OPERATOR_TO_OPERATION = {"*": "multiply", "+": "add", "-": "subtract", "/": "divide"}
_OPERATOR_RE = re.compile(r"\d\s*([*+\-/])\s*\d")
_INTEGER_RE = re.compile(r"-?\d+")


SYMBOLS = {"multiply": "*", "add": "+", "subtract": "-", "divide": "/"}
HELD_OUT_SEED = 1234  # evaluation prompts come from another seed than the training data's 42
RL_OPERATIONS = ("multiply", "add", "subtract")  # the guide's RL baseline: + - *
RL_PROMPT = "Calculate: {prompt}"


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


def guide_classes() -> LabelledPrompts:
    """The guide's probe prompts, four per operation."""
    return LabelledPrompts(
        [p for ps in guide.CLASSES.values() for p in ps], [c for c, ps in guide.CLASSES.items() for _ in ps]
    )


def rl_prompts(records: list[dict]) -> list[dict]:
    """The + - * records of the guide's generator as its RL prompts, "Calculate: a op b = ", with the answer."""
    return [
        {"prompt": RL_PROMPT.format(prompt=r["prompt"]), "answer": r["response"], "operation": r["operation"]}
        for r in records
        if r.get("operation") in RL_OPERATIONS
    ]


def infer_operation(prompt: str) -> str | None:
    """The arithmetic operation a prompt asks for, from its operator ("7 * 8 = " -> "multiply"), or None."""
    match = _OPERATOR_RE.search(prompt)
    return OPERATOR_TO_OPERATION[match.group(1)] if match else None


def integer_complete(text: str) -> bool:
    """True once more text cannot change ``first_integer(text)``: a character follows the first integer."""
    match = _INTEGER_RE.search(text)
    return match is not None and match.end() < len(text)


def first_integer(text: str) -> int | None:
    """The first integer in a completion ("56\\n7" -> 56), as the guide's RL reward extracts it; None when there is none."""
    match = _INTEGER_RE.search(text)
    return int(match.group()) if match else None


def answer_correct(text: str, response: str) -> bool:
    """The guide's answer rule: the first integer of a completion equals the exact result."""
    value = first_integer(text)
    return value is not None and str(value) == str(response).strip()

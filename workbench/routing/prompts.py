"""The routing evaluation set: arithmetic in symbols, in words and mixed, and negatives that must not be routed.

Every item says what a perfect router decides (``operation``: one of the guide's four, or None = the model answers) and,
for arithmetic, the exact answer. Operands come from the seed generator's ranges (``core.data``); division is exact.
``training_items`` and ``evaluation_items`` draw from different seeds, and the ``mixed`` phrasings appear only in the
evaluation set, so a fitted router is scored on operands and phrasings it never saw.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from ..core.arithmetic import SYMBOLS
from ..core.errors import WorkbenchError
from ..core.guide import OPERATIONS

TRAIN_SEED, EVAL_SEED = 7, 1234
KINDS = ("symbol", "word", "mixed", "negative")
NONE = "none"  # the label of "no operation: the model answers"

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
VERBS = {"multiply": "times", "add": "plus", "subtract": "minus", "divide": "divided by"}

WORD_TEMPLATES = ("What is {a} {verb} {b}?", "{a} {verb} {b}", "Compute {a} {verb} {b}.")
MIXED_TEMPLATES = ("What is {a} {sym} {b}?", "{a} {verb} {b} = ", "Please work out {a} {verb} {b}")

# Non-arithmetic prompts, some with numbers but no operation: a router that fires on digits alone fails these.
NEGATIVES = (
    "The capital of France is",
    "Once upon a time there was a",
    "My favourite colour is",
    "Translate 'good morning' into Spanish:",
    "The weather today is sunny and",
    "Write a haiku about the sea.",
    "Who wrote Hamlet?",
    "The quick brown fox jumps over the",
    "What is the meaning of life?",
    "Name a fruit that is yellow.",
    "The movie was wonderful and the actors were",
    "def main():",
    "Dear team, thank you for",
    "The opposite of hot is",
    "What is the boiling point of water?",
    "A cat sat on the",
    "I was born in 1990 in a small town.",
    "The meeting is in room 12 on floor 3.",
    "Chapter 7: The long road home",
    "Call 911 in an emergency.",
    "The year 2024 was a leap year.",
    "She scored 8 goals in 5 games.",
    "Highway 66 runs through Arizona.",
    "Version 3 of the software came out",
    "My phone number ends in 42.",
    "Apollo 11 landed on the moon in 1969.",
    "There are 7 days in a week and 12 months in a year.",
    "What is your name?",
    "Summarise this paragraph in one sentence.",
    "How do I bake bread?",
    "Seven wonders of the ancient world",
    "The train leaves at 9 and arrives at 11.",
    "Is 17 a lucky number?",
    "Python 3 is a programming language.",
    "The recipe needs 2 eggs and 3 cups of flour.",
    "What is a prime number?",
    "Add salt to taste and stir.",
    "Multiply your chances of success by practising.",
    "She divided her time between London and Paris.",
    "Subtract the noise from the signal, the engineer said.",
)


def number_word(n: int) -> str:
    """0..99 in English words ("forty-two")."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")


@dataclass(frozen=True)
class RouteItem:
    prompt: str
    kind: str  # symbol | word | mixed | negative
    operation: str | None  # what a perfect router picks; None: the model answers
    answer: int | None  # the exact answer of an arithmetic item

    @property
    def label(self) -> str:
        return self.operation or NONE

    def to_dict(self) -> dict:
        return asdict(self)


def _operands(rng: random.Random, op: str) -> tuple[int, int]:
    """The seed generator's ranges (core.data.generate_arithmetic), kept under 100 so words can spell them."""
    if op in ("multiply", "add"):
        return rng.randint(1, 50), rng.randint(1, 50)
    if op == "subtract":
        a = rng.randint(10, 99)
        return a, rng.randint(1, a)
    b, k = rng.randint(1, 12), rng.randint(1, 8)
    return b * k, b


def _answer(op: str, a: int, b: int) -> int:
    return {"multiply": a * b, "add": a + b, "subtract": a - b, "divide": a // b}[op]


def _arithmetic(rng: random.Random, kind: str, n: int) -> list[RouteItem]:
    items = []
    for i in range(n):
        op = OPERATIONS[i % len(OPERATIONS)]
        a, b = _operands(rng, op)
        if kind == "symbol":
            prompt = f"{a} {SYMBOLS[op]} {b} = "
        elif kind == "word":
            spelled = rng.random() < 0.5
            fa, fb = (number_word(a), number_word(b)) if spelled else (a, b)
            prompt = rng.choice(WORD_TEMPLATES).format(a=fa, b=fb, verb=VERBS[op])
        else:
            prompt = rng.choice(MIXED_TEMPLATES).format(a=a, b=b, sym=SYMBOLS[op], verb=VERBS[op])
        items.append(RouteItem(prompt, kind, op, _answer(op, a, b)))
    return items


def _negatives(extra: list[str], part: int) -> list[RouteItem]:
    """Every other built-in negative (part 0 or 1: the two halves never overlap), then ``extra`` prompts."""
    own = [p for i, p in enumerate(NEGATIVES) if i % 2 == part]
    return [RouteItem(p, "negative", None, None) for p in own + list(extra)]


def training_items(per_kind: int = 32, extra_negatives: list[str] = (), seed: int = TRAIN_SEED) -> list[RouteItem]:
    """What a fitted router (probe, direction) learns from: symbol and word prompts, and half the negatives."""
    if seed == EVAL_SEED:
        raise WorkbenchError(f"seed {EVAL_SEED} draws the evaluation set's own prompts: pick another training seed")
    rng = random.Random(seed)
    return _arithmetic(rng, "symbol", per_kind) + _arithmetic(rng, "word", per_kind) + _negatives(extra_negatives, 0)


def evaluation_items(per_kind: int = 40, extra_negatives: list[str] = (), seed: int = EVAL_SEED) -> list[RouteItem]:
    """What routers are scored on: symbol, word and mixed prompts (``per_kind`` each, the four operations in turn), the
    other half of the negatives, and ``extra_negatives`` (e.g. a task's prompts)."""
    rng = random.Random(seed)
    arithmetic = [item for kind in KINDS[:3] for item in _arithmetic(rng, kind, per_kind)]
    return arithmetic + _negatives(extra_negatives, 1)


def task_negatives(task: str, n: int = 40, seed: int = EVAL_SEED) -> list[str]:
    """``n`` prompts of a classification task (its template filled with held-out texts): arithmetic's negatives from
    the tasks layer. Raises WorkbenchError, naming the fetch command, when the task's data is not in the cache."""
    from ..tasks.data import task_data
    from ..tasks.spec import load_task

    spec = load_task(task)
    data = task_data(spec, n, n, seed)
    return [r["prompt"] for r in data.heldout[:n]]

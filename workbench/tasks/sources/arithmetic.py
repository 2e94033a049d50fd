"""The arithmetic task's source: the guide's generator (``core.arithmetic``) instead of examples. Its records are
generated from the seed, held out from another seed, none out of distribution; its probe, test and lens prompts are
the guide's own (``core.guide``); a prompt's class is the operation its operator names; activation-patching pairs
share their operands; the answer is the computed result (the first integer of a greedy completion); GRPO trains on
the guide's "Calculate: a op b = " prompts with its first-integer reward (the GRPO config's defaults)."""

from __future__ import annotations

from pathlib import Path

from ...core import guide
from ...core.arithmetic import (
    HELD_OUT_SEED,
    SYMBOLS,
    generate_arithmetic,
    guide_classes,
    held_out,
    infer_operation,
    make_example,
    rl_prompts,
)
from ...core.errors import WorkbenchError
from ...core.tasks import LabelledPrompts


def operand_pairs(records: list[dict], source_class: str, target_class: str, n: int) -> list[dict]:
    """Same operands, two operations: each target-class record ``a + b = `` with ``a * b = `` as its source (both
    answers from the rule), so every pair aligns token for token. Division sources need ``b`` to divide ``a``."""
    for name in (source_class, target_class):
        if name not in SYMBOLS:
            raise WorkbenchError(f"class {name!r} is not an arithmetic operation: use one of {', '.join(SYMBOLS)}")
    if source_class == target_class:
        raise WorkbenchError(f"source and target class are both {source_class!r}: pick two different operations")
    pairs = []
    for rec in records:
        a, _, b = rec["prompt"].split()[:3]
        a, b = int(a), int(b)
        if rec.get("operation") != target_class or (source_class == "divide" and (b == 0 or a % b)):
            continue
        source, target = make_example(source_class, a, b), make_example(target_class, a, b)
        pairs.append({"source": source["prompt"], "target": target["prompt"], "source_class": source_class,
                      "target_class": target_class, "source_answer": source["response"],
                      "target_answer": target["response"]})  # fmt: skip
        if len(pairs) == n:
            break
    if not pairs:
        raise WorkbenchError(f"no {target_class!r} records to pair with {source_class!r}: pass more data")
    return pairs


class ArithmeticSource:
    """The guide's arithmetic as a ``TaskSource`` (``tasks.source``)."""

    label = "arithmetic generator"  # how an error names the source
    answer = "computed"  # the answer rule: the first integer of the completion is the exact result
    generated = True

    def __init__(self, spec):
        self.spec = spec

    def examples(self, cache: Path | None = None) -> list[dict]:
        raise WorkbenchError("the arithmetic task has no example file: its records come from the generator")

    def records(
        self, train_samples: int, eval_samples: int, seed: int, cache: Path | None = None
    ) -> tuple[list[dict], list[dict], list[dict]]:
        """The generator with ``seed``, prompts held out from another seed, nothing out of distribution."""
        train = generate_arithmetic(train_samples, seed)
        return train, held_out(train, eval_samples), []

    def probe_prompts(self, train: list[dict]) -> LabelledPrompts:
        """The guide's sixteen, four per operation."""
        return guide_classes()

    def test_prompts(self, heldout: list[dict]) -> list[str]:
        """The guide's four."""
        return list(guide.TEST_PROMPTS)

    def lens_prompts(self, heldout: list[dict], n: int) -> tuple[list[str], list[str] | None]:
        """The guide's four (``n`` = 4) or eight, expected words None: the lens reads them from the operator."""
        return list(guide.LENS_PROMPTS if n == 4 else guide.EIGHT_PROMPTS), None

    def pairs(self, records: list[dict], source_class: str, target_class: str, n: int) -> list[dict]:
        return operand_pairs(records, source_class, target_class, n)

    def expected_class(self, prompt: str) -> str | None:
        """The operation the prompt's operator names."""
        return infer_operation(prompt)

    def grpo_prompts(self, records: list[dict]) -> list[dict]:
        """The guide's RL prompts: "Calculate: a op b = " over the + - * records."""
        return rl_prompts(records)

    def grpo_config(self, reward: str | None) -> dict:
        """Nothing: the GRPO config's defaults are the guide's (first-integer reward, the four operation words,
        computed answers)."""
        return {}

    def describe(self, spec) -> str:
        """The guide's generator (``core.arithmetic.generate_arithmetic``) in words: its operand ranges and records."""
        words = ", ".join(f"`{w}`" for w in spec.classes.values())
        return (
            "The guide's generator (`workbench.core.arithmetic.generate_arithmetic`): the operation is uniform over "
            "`* + - /`; `*` and `+` take both operands in [1, 50]; `-` takes a in [10, 100] and b in [1, a], so no "
            "result is negative; `/` is exact, with divisor and quotient in [1, 12]. Each record holds the prompt "
            "(`a op b = `), the response (the computed result, which the answer is scored on), the operation and the "
            f"classification target (the word the intermediate loss of phase 1 pulls the lens towards: {words}). "
            "The notebook's `seed` draws the training records; the held-out set is drawn from another seed "
            f"({HELD_OUT_SEED}), skipping every prompt the training data holds. No record is out of distribution."
        )

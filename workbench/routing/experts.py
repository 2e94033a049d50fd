"""Experts answer a routed prompt: the calculator (exact, parsed from the operands the prompt holds, never ``eval``),
the model itself (greedy, KV cache: the fallback), or a user's own ``module:function``.

An expert is ``fn(prompt: str, operation: str) -> str | int``; raising ``ExpertDeclined`` (or anything else, or running
past the timeout) hands the prompt back to the model, and the result records why.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from fractions import Fraction

from ..core.errors import WorkbenchError
from .prompts import _ONES, _TENS

Expert = Callable[[str, str], "str | int"]


class ExpertDeclined(Exception):
    """The expert cannot answer this prompt (no two operands, a division by zero): the model answers instead."""


_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUMBER_RE = re.compile(
    r"-?\d+(?:\.\d+)?|\b(?:"
    + "|".join(sorted(_WORD_VALUES, key=len, reverse=True))
    + r")(?:[- ](?:"
    + "|".join(_ONES[1:10])
    + r"))?\b",
    re.IGNORECASE,
)


def _value(token: str) -> Fraction:
    token = token.lower()
    if token[0].isdigit() or token[0] == "-":
        return Fraction(token)
    head, _, tail = token.replace(" ", "-").partition("-")
    return Fraction(_WORD_VALUES[head] + (_WORD_VALUES[tail] if tail else 0))


def operands(prompt: str) -> tuple[Fraction, Fraction]:
    """The two numbers a prompt holds, as digits or English words up to ninety-nine ("7", "forty-two")."""
    found = [_value(m.group()) for m in _NUMBER_RE.finditer(prompt)]
    if len(found) != 2:
        raise ExpertDeclined(f"the prompt holds {len(found)} numbers, the calculator needs exactly 2")
    return found[0], found[1]


_OPERATIONS = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
}


def calculator(prompt: str, operation: str) -> str:
    """The exact result of ``operation`` on the prompt's two operands: an integer when it is one, else a decimal."""
    if operation not in _OPERATIONS:
        raise ExpertDeclined(f"the calculator has no operation {operation!r}")
    a, b = operands(prompt)
    if operation == "divide" and b == 0:
        raise ExpertDeclined("division by zero")
    result = _OPERATIONS[operation](a, b)
    return str(result.numerator) if result.denominator == 1 else f"{float(result):.6g}"


def load_expert(target: str) -> Expert:
    """A user's expert from ``module:function`` (the module must be importable, e.g. on PYTHONPATH)."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise WorkbenchError(f"expert {target!r} is not module:function: pass e.g. my_experts:calculator")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkbenchError(f"cannot import expert module {module_name!r} ({exc}): put it on PYTHONPATH") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise WorkbenchError(f"expert {target!r}: module {module_name!r} has no function {name!r}")
    return fn


def call_expert(expert: Expert, prompt: str, operation: str, timeout_s: float) -> tuple[str | None, str | None]:
    """(answer, None) or (None, why the expert did not answer): declined, raised, or ran past ``timeout_s`` (its thread
    is left to finish on its own; its answer is then ignored)."""
    out: dict = {}

    def work():
        try:
            out["answer"] = expert(prompt, operation)
        except ExpertDeclined as exc:
            out["why"] = f"declined: {exc}"
        except Exception as exc:  # a user's expert may raise anything: the model answers and the result says why
            out["why"] = f"raised {type(exc).__name__}: {str(exc)[:120]}"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, f"timed out after {timeout_s:g} s"
    if "why" in out:
        return None, out["why"]
    if out.get("answer") is None:
        return None, "returned no answer"
    return str(out["answer"]), None

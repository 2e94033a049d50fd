"""Where a task's records come from, as one interface: a ``TaskSource`` gives a task's records, the prompt sets the
probe and the lens read, activation-patching pairs, the expected class of a prompt, its answer rule, its GRPO
prompts and how its records are made, in words (``describe``). Two sources implement it: examples
(``sources.examples``: vader, udhr, code, wordnet, a user's JSONL) and the guide's arithmetic generator
(``sources.arithmetic``). ``source_of(spec)`` picks a task's; callers ask it instead of asking which task they hold."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from ..core.tasks import LabelledPrompts
from .sources.arithmetic import ArithmeticSource
from .sources.examples import ExamplesSource


class TaskSource(Protocol):
    """A task's records and what is read from them. Records are SFT records ``{prompt, response,
    classification_target, ...}``; a pair is a dict of ``causal.patching.Pair``'s fields."""

    label: ClassVar[str]  # how an error names the source ("examples source", "arithmetic generator")
    answer: ClassVar[str]  # the answer rule: "class_word" (the class word) or "computed" (the first integer)
    generated: ClassVar[bool]  # records come from a generator: no examples file, nothing to fetch

    def examples(self, cache: Path | None = None) -> list[dict]:
        """Every example ``{text, label, group, subset}`` (a generator has none: an error)."""
        ...

    def records(
        self, train_samples: int, eval_samples: int, seed: int, cache: Path | None = None
    ) -> tuple[list[dict], list[dict], list[dict]]:
        """(training, held-out, out-of-distribution) records."""
        ...

    def probe_prompts(self, train: list[dict]) -> LabelledPrompts:
        """The probe's labelled prompts."""
        ...

    def test_prompts(self, heldout: list[dict]) -> list[str]:
        """Prompts the probe classifies, not in its training set."""
        ...

    def lens_prompts(self, heldout: list[dict], n: int) -> tuple[list[str], list[str] | None]:
        """(``n`` prompts for the lens tables, their expected class words; None: read from each prompt by the lens)."""
        ...

    def pairs(self, records: list[dict], source_class: str, target_class: str, n: int) -> list[dict]:
        """Up to ``n`` activation-patching pairs of source-class into target-class prompts from held-out records."""
        ...

    def expected_class(self, prompt: str) -> str | None:
        """The class a prompt's text names (None: it names none)."""
        ...

    def grpo_prompts(self, records: list[dict]) -> list[dict]:
        """GRPO's prompts ``{prompt, answer, ...}`` from training records."""
        ...

    def grpo_config(self, reward: str | None) -> dict:
        """The GRPO config keys that make GRPO train and measure this task (``reward``: a ``module:function`` given)."""
        ...

    def describe(self, spec) -> str:
        """A few sentences of markdown on how the task's (``spec``) records are made: where they come from, the
        classes and their words, the template, the split (the notebooks' data Method shows it)."""
        ...


GENERATORS: dict[str, type[TaskSource]] = {"arithmetic": ArithmeticSource}  # built-in sources that generate records
SOURCES: tuple[type[TaskSource], ...] = (ExamplesSource, *GENERATORS.values())


def source_class(source) -> type[TaskSource]:
    """The implementation of a task file's ``source`` (``spec.Source``): a generator's, else examples."""
    return GENERATORS.get(source.builtin or "", ExamplesSource)


def source_of(spec) -> TaskSource:
    """A task's (``spec.TaskSpec``) source."""
    return source_class(spec.source)(spec)

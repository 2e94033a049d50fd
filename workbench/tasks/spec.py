"""A task as data: a YAML file naming the classes and their class words, the prompt template, where the examples
come from, how the answer is scored and how held-out data is split. Validated like the training configs: an unknown
key, a template without ``{text}`` or an unknown source is one line naming the file and the fix."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.data import read_yaml
from ..core.errors import WorkbenchError
from .source import SOURCES, source_class

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_SOURCES = ("arithmetic", "vader", "udhr", "code", "wordnet")
DEFAULT_TASK = "arithmetic"


class Source(BaseModel):
    """Exactly one of ``builtin`` (a loader shipped here, fetched by `workbench data fetch`) or ``jsonl`` (a file of
    ``{"text", "label"}`` lines, optionally ``group`` and ``subset``; relative to the task file)."""

    model_config = ConfigDict(extra="forbid")
    builtin: Literal["arithmetic", "vader", "udhr", "code", "wordnet"] | None = None
    jsonl: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.builtin is None) == (self.jsonl is None):
            raise ValueError("give exactly one of builtin or jsonl")
        return self


class Split(BaseModel):
    """Held-out data: ``by`` item, or by ``group`` (a source file, a document section: no held-out prompt shares its
    group with training). ``heldout`` is the fraction of items or groups held out, unless ``heldout_subsets`` names the
    subsets that are held out instead (sentiment: train on "easy", hold out "hard"). ``ood_subsets``: evaluated as out
    of distribution, never trained on."""

    model_config = ConfigDict(extra="forbid")
    by: Literal["item", "group"] = "item"
    heldout: float = Field(0.2, gt=0, lt=1)
    train_subsets: list[str] | None = None
    heldout_subsets: list[str] | None = None
    ood_subsets: list[str] = Field(default_factory=list)
    seed: int = 1234


class Steps(BaseModel):
    """What `workbench run all --task` trains and measures: the two phases' training steps (the guide's 500 and 300
    for arithmetic) and the held-out records measured (the guide's 200; out-of-distribution records as many)."""

    model_config = ConfigDict(extra="forbid")
    phase1: int = Field(500, ge=1)
    phase2: int = Field(300, ge=1)
    eval_samples: int = Field(200, ge=1)


class Nouns(BaseModel):
    """How the pages name a task's things. The defaults suit a classification task; the guide's arithmetic names its
    own (``builtin/arithmetic.yaml``: an operation, the guide's eight prompts, greedy answers with the right number)."""

    model_config = ConfigDict(extra="forbid")
    one: str = "class"  # what one class is called
    many: str = "classes"
    eight: str = "eight held-out prompts"  # the small lens table (the guide's eight for arithmetic)
    answers: str = "class-word answers"  # what phase 2 is scored on
    accuracy: str = "answer accuracy"
    right: str = "with the right class word"  # how an answer is right, after "answers"

    @property
    def Eight(self) -> str:  # noqa: N802  (the sentence-initial form)
        return self.eight[:1].upper() + self.eight[1:]


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    classes: dict[str, str]  # label -> the class word the lens and the answer read (" positive": mind the space)
    template: str = "{text}"
    source: Source
    answer: Literal["class_word", "computed"] | None = None  # the source's answer rule (None: filled in from it)
    split: Split = Field(default_factory=Split)
    probe_per_class: int = Field(32, ge=2)  # probe prompts per class (from the training split)
    steps: Steps = Field(default_factory=Steps)
    nouns: Nouns = Field(default_factory=Nouns)
    patchscope_target: str | None = None  # the Patchscope readout's target prompt (None: the token-identity prompt)
    path: str | None = None  # the file it was read from (set by load_task)

    @field_validator("template")
    @classmethod
    def _has_text_slot(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("the template has no {text} slot: write it as e.g. 'Review: {text}\\nSentiment:'")
        try:
            v.format(text="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the template's only slot may be {{text}} ({exc}); double other braces: {{{{ }}}}"
            ) from None
        return v

    @field_validator("classes")
    @classmethod
    def _two_classes(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) < 2:
            raise ValueError(f"a task needs at least 2 classes, got {len(v)}")
        empty = [label for label, word in v.items() if not label.strip() or not word.strip()]
        if empty:
            raise ValueError(f"class {empty[0]!r} has an empty label or class word")
        if len(set(v.values())) != len(v):
            raise ValueError("two classes share a class word: give each class its own word")
        return v

    @model_validator(mode="after")
    def _answer_is_the_sources(self):
        rule = source_class(self.source).answer
        if self.answer is not None and self.answer != rule:
            owner = next(s.label for s in SOURCES if s.answer == self.answer)
            raise ValueError(f"answer {self.answer!r} is the {owner}'s: use answer: {rule}")
        self.answer = rule
        return self

    @property
    def labels(self) -> list[str]:
        return list(self.classes)

    def prompt(self, text: str) -> str:
        return self.template.format(text=text)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _explain(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = (
            {"source": Source, "split": Split, "steps": Steps, "nouns": Nouns}.get(loc[0], TaskSpec)
            if len(loc) > 1
            else TaskSpec
        )
        near = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.0)
        return f"{source}: unknown key {key!r}; did you mean {near[0] if near else ''!r}?"
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: key {key!r}: {message}"


def load_task(name_or_file: str | Path | None = None) -> TaskSpec:
    """A built-in task by name (arithmetic, sentiment, language, code, category) or a task YAML file."""
    name = str(name_or_file or DEFAULT_TASK)
    path = Path(name)
    if not name.endswith((".yaml", ".yml")) and not path.exists():
        if name not in builtin_names():
            known = ", ".join(builtin_names())
            raise WorkbenchError(f"unknown task {name!r}: choose one of {known}, or pass a task YAML file")
        path = BUILTIN_DIR / f"{name}.yaml"
    elif not path.is_file():
        raise WorkbenchError(f"task file {name!r} does not exist: check the --task path")
    values = read_yaml(path)
    try:
        spec = TaskSpec.model_validate(values)
    except ValidationError as err:
        raise WorkbenchError(_explain(err, str(path))) from None
    return spec.model_copy(update={"path": str(path.resolve())})


@functools.lru_cache(maxsize=32)
def task_nouns(name_or_file: str | None = None) -> Nouns:
    """The nouns of a task (by name or file; None: the guide's arithmetic)."""
    return load_task(name_or_file).nouns

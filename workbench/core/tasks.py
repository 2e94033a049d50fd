"""Labelled prompt sets: the ``label:p|p`` spec parser and ``@file`` lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError


def parse_prompt_list(text: str, what: str = "prompt list") -> list[str]:
    """``"p1|p2|p3"`` or ``@file.txt`` (one prompt per line, trailing spaces kept). Empty prompts are errors."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WorkbenchError(
                f"cannot read {what} file {str(path)!r} ({exc.strerror}): check the path after '@'"
            ) from None
        except UnicodeDecodeError:
            raise WorkbenchError(
                f"{what} file {str(path)!r} is not UTF-8 text: save it as UTF-8, one prompt per line"
            ) from None
        except ValueError:  # a NUL byte in the path
            raise WorkbenchError(
                f"{what} file name {str(path)!r} is not a valid path: check the path after '@'"
            ) from None
        prompts = [line.rstrip("\r\n") for line in raw.splitlines() if line.strip()]
        if not prompts:
            raise WorkbenchError(f"{what} file {str(path)!r} holds no prompts: write one prompt per line")
        return prompts
    prompts = text.split("|")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise WorkbenchError(
                f"{what} {text!r} has an empty prompt at position {i + 1}: separate non-empty prompts with '|'"
            )
    return prompts


@dataclass(frozen=True)
class LabelledPrompts:
    prompts: list[str]
    labels: list[str]

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(self.labels))

    def by_class(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {c: [] for c in self.classes}
        for p, y in zip(self.prompts, self.labels):
            out[y].append(p)
        return out


def parse_class_spec(spec: str) -> tuple[str, list[str]]:
    """``"label:p1|p2"`` -> (label, prompts). The label may not contain ':'; prompts may."""
    label, sep, rest = spec.partition(":")
    if not sep:
        raise WorkbenchError(f"--classes {spec!r} has no ':': write it as \"label:prompt1|prompt2|...\"")
    label = label.strip()
    if not label:
        raise WorkbenchError(f'--classes {spec!r} has an empty label: write it as "label:prompt1|prompt2|..."')
    if not rest.strip():
        raise WorkbenchError(f"--classes {spec!r} has no prompts after ':': write it as \"label:prompt1|prompt2|...\"")
    return label, parse_prompt_list(rest, what=f"--classes {label!r}")


def parse_classes(specs: list[str]) -> LabelledPrompts:
    """Several ``--classes`` specs -> a labelled prompt set, checked for what a probe needs."""
    prompts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        label, ps = parse_class_spec(spec)
        if label in seen:
            raise WorkbenchError(f"--classes label {label!r} is given twice: merge its prompts into one --classes")
        seen.add(label)
        prompts += ps
        labels += [label] * len(ps)
    if len(seen) < 2:
        raise WorkbenchError(
            f'a probe needs at least 2 classes, got {len(seen)}: repeat --classes "label:p|p" once per class'
        )
    duplicates = sorted({p for p in prompts if prompts.count(p) > 1})
    if duplicates:
        raise WorkbenchError(
            f"prompt {duplicates[0]!r} appears more than once: each prompt may belong to one class only"
        )
    data = LabelledPrompts(prompts, labels)
    smallest = min(len(v) for v in data.by_class().values())
    if smallest < 2:
        small = min(data.by_class().items(), key=lambda kv: len(kv[1]))[0]
        raise WorkbenchError(
            f"class {small!r} has {smallest} prompt; cross-validation needs at least 2 per class: add prompts to it"
        )
    return data

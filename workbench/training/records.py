"""Typed records of what training writes (``metrics.json``, greedy evaluations): read a result file into attributes
instead of key paths. ``from_dict`` keeps keys it does not know, so ``to_dict`` gives the file back as it was."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import WorkbenchError
from ..core.results import read_result


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def from_dict(cls, doc: dict):
        return cls.model_validate(doc)

    @classmethod
    def read(cls, path: str | Path):
        """A result file as this record; a file that is not one is a one-line error naming it."""
        try:
            return cls.from_dict(read_result(path))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(top level)"
            raise WorkbenchError(
                f"{path} is not a {cls.__name__} result ({where}: {first['msg']}): rerun the step that writes it"
            ) from None

    def to_dict(self) -> dict:
        return self.model_dump()


class TopOne(Record):
    correct: int
    total: int


class LensMetrics(Record):
    """The lens at one layer on held-out prompts (``evaluation.lens_metrics``)."""

    layer: int
    prompts: int
    mean_correct_target_prob: float | None
    top1_score: TopOne
    per_operation_prob: dict[str, float]


class Measurement(Record):
    """One held-out measurement: the lens and the teacher-forced answers (and greedy accuracy where measured)."""

    lens: LensMetrics
    answer_loss: float
    answer_exact_match: float
    prompts: int
    greedy_accuracy: float | None = None


class TrainMetrics(Record):
    """``metrics.json`` of `workbench train sft` or `train grpo`: the measurement before (None when a resumed run has
    none) and after training, at the classifier layer."""

    kind: str
    model: str
    steps: int
    eval_prompts: int
    before: Measurement | None
    after: Measurement
    config: dict


class GreedyRow(Record):
    prompt: str
    response: str
    greedy: str
    answer: int | str | None  # the integer read from the completion, or a classification task's class word
    correct: bool


class GreedyEval(Record):
    """Greedy answers to held-out records (``evaluation.greedy_eval``)."""

    rows: list[GreedyRow]
    accuracy: float | None

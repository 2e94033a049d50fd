"""A study file: models × tasks × seeds × phases, the executor that runs them and each phase's resources.

```yaml
models: [default]                  # as `workbench run --model` takes them
tasks: [arithmetic, sentiment]     # built-in names or task YAML files
seeds: 3                           # training seeds 42, 43, 44 (``seed`` moves the first)
phases: [generate, baseline, phase1, phase2, verify]
executor: {kind: local, max_jobs: 2}   # inline | local | slurm
resources:                         # per phase; ``default`` for the rest
  default: {cpus: 1, minutes: 60}
  phase1: {cpus: 2, gpus: 0, mem_gb: 8, minutes: 120, partition: null}
```

Each (model, task) pair is a run folder exactly as `workbench run` makes it, inside the study folder (``out``,
default ``studies/<file name>``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.errors import WorkbenchError
from ..core.specs import load_spec
from ..experiment.phases import PHASES, phase_names

STUDY_PHASES = tuple(PHASES)  # generate, baseline, phase1, phase2, verify, compare, causal, route, readouts


class Resources(BaseModel):
    """What one job of a phase asks the scheduler for."""

    model_config = ConfigDict(extra="forbid")
    cpus: int = Field(1, ge=1)
    gpus: int = Field(0, ge=0)
    mem_gb: float | None = Field(None, gt=0)
    minutes: int = Field(60, ge=1)
    partition: str | None = None


class Executor(BaseModel):
    """Where jobs run: ``inline`` (one after another in this process), ``local`` (submitit's local executor: parallel
    processes on this machine) or ``slurm`` (submitit on SLURM, dependencies as ``afterok``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["inline", "local", "slurm"] = "inline"
    max_jobs: int = Field(2, ge=1)  # jobs running at once
    poll_seconds: float = Field(2.0, gt=0)


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    seeds: int = Field(1, ge=1)
    seed: int | None = None
    phases: list[str] = Field(min_length=1)
    quick: bool = False
    executor: Executor = Executor()
    resources: dict[str, Resources] = {}
    out: str | None = None
    path: str | None = Field(None, exclude=True)  # the file it was read from

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, phases: list[str]) -> list[str]:
        try:
            names = [n for p in phases for n in phase_names(p)]  # `all` expands to generate ... verify
        except WorkbenchError as exc:
            raise ValueError(str(exc)) from None
        return [n for n in STUDY_PHASES if n in names]  # the engine's order, each once

    @model_validator(mode="after")
    def _needs_in_study(self):
        for name in self.phases:
            for need, writer in PHASES[name].needs:
                if writer not in self.phases:
                    raise ValueError(f"phase {name} needs {need}, which phase {writer} writes: add {writer} to phases")
        for key in self.resources:
            if key != "default" and key not in STUDY_PHASES:
                raise ValueError(
                    f"resources for unknown phase {key!r}: use default or one of {', '.join(STUDY_PHASES)}"
                )
        return self

    def resources_for(self, phase: str) -> Resources:
        base = self.resources.get("default", Resources())
        return (
            base.model_copy(update=self.resources[phase].model_dump(exclude_unset=True))
            if phase in self.resources
            else base
        )

    def digest(self) -> str:
        """What makes two study files the same study (the executor and resources may change between runs)."""
        same = self.model_dump(include={"models", "tasks", "seeds", "seed", "phases", "quick"})
        return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """A model or task name as a folder name: ``org/name`` -> ``org-name``; a path -> its last part."""
    text = Path(text).stem if text.endswith((".yaml", ".yml", ".gguf")) else text.rstrip("/")
    text = text.split("/")[-1] if Path(text).is_absolute() or text.startswith(".") else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def load_study(path: str | Path) -> Study:
    """A study file, checked before anything is written: every key, phase, model and task."""
    from ..core.model_sources import resolve  # transformers: seconds that a job's process need not pay
    from ..tasks.spec import load_task

    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"study file {str(path)!r} does not exist: check the path")
    study = load_spec(path, Study, {"executor": Executor, "resources": Resources})
    for model in study.models:
        try:
            resolve(model)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{path}: models: {exc}") from None
    base = path.parent
    tasks = []
    for task in study.tasks:  # a relative task file is relative to the study file
        local = base / task
        tasks.append(str(local.resolve()) if task.endswith((".yaml", ".yml")) and local.is_file() else task)
        try:
            load_task(tasks[-1])
        except WorkbenchError as exc:
            raise WorkbenchError(f"{path}: tasks: {exc}") from None
    folders = [f"{slug(m)}--{slug(t)}" for m in study.models for t in tasks]
    if len(set(folders)) != len(folders):
        raise WorkbenchError(f"{path}: two models or tasks share a folder name ({folders}): rename one")
    out = study.out or str(Path("studies") / path.stem)
    return study.model_copy(update={"tasks": tasks, "out": out, "path": str(path.resolve())})

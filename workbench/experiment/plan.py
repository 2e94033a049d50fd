"""What a `workbench run` will do, decided before anything runs: the jobs (a phase for one training seed), the
parameters each notebook gets, whether what they read is there, and whether a job marked done was done with these
parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import check_free_space, check_writable
from ..tasks.spec import TaskSpec
from .layout import RunLayout
from .phases import DEFAULT_SEED, PHASES, Phase, Step
from .record import _read_json

RUN_MB, SEED_MB = 64, 32  # a full run folder measured 48 MB with 3 seeds; asked for up front, with room to spare


@dataclass(frozen=True)
class Job:
    """One phase for one training seed (``seed`` None: a phase that runs once)."""

    phase: str
    seed: int | None

    @property
    def key(self) -> str:
        return self.phase if self.seed is None else f"{self.phase}.seed-{self.seed}"

    def folder(self, out: Path) -> Path:
        return out if self.seed is None else out / f"seed-{self.seed}"


def seed_list(seed: int | None, seeds: int) -> list[int]:
    """The training seeds: ``seeds`` consecutive ones from ``seed`` (default 42)."""
    if seeds < 1:
        raise WorkbenchError(f"--seeds {seeds}: pass 1 or more training seeds")
    start = DEFAULT_SEED if seed is None else seed
    return [start + i for i in range(seeds)]


def marker_path(out: Path, key: str) -> Path:
    return RunLayout(out).marker(key)


def step_parameters(
    step: Step,
    out: Path,
    job: Job,
    model: str,
    quick: bool,
    seed: int | None,
    seeds: list[int],
    thresholds: Mapping[str, float] | None = None,
    task: TaskSpec | None = None,
) -> dict:
    """The values papermill injects (a dict of values, never code): model, output_dir, seed, config, data paths,
    training seeds, the task, quick sizes. A seeded job gets its own seed; the others get ``seed`` when one is given."""
    params = {"model": model, "output_dir": str(job.folder(out)), **step.parameters}
    if job.seed is not None:
        params["seed"] = job.seed
    elif seed is not None:
        params["seed"] = seed
    if step.config is not None:
        params["config"] = str(RunLayout(out).configs / step.config.name)
    params.update({name: str(out / rel) for name, rel in step.paths.items()})
    if step.seeds_param:
        params["seeds"] = list(seeds)
    if step.thresholds_param:
        params["thresholds"] = dict(thresholds or {})
    if task is not None:
        params["task"] = task.path
        params.update({name: str(out / rel) for name, rel in step.task_paths.items()})
        if step.steps_key:
            params["max_steps"] = getattr(task.steps, step.steps_key)
        if step.task_sizes:
            params["eval_samples"] = task.steps.eval_samples
    if quick:
        params.update(step.quick)
    return params


def _need_path(out: Path, job: Job, need: str, writer: str, phases: Mapping[str, Phase]) -> Path:
    return (job.folder(out) if phases[writer].seeded else out) / need


def _need_paths(
    out: Path, job: Job, need: str, writer: str, phases: Mapping[str, Phase], seeds: list[int]
) -> list[Path]:
    """Where a job looks for what ``writer`` makes: its own seed's folder, every seed's (an unseeded job reading a
    seeded phase's output, as `run causal` reads each seed's adapters), or the run folder."""
    if phases[writer].seeded and job.seed is None:
        return [out / f"seed-{s}" / need for s in seeds]
    return [_need_path(out, job, need, writer, phases)]


def _missing(out: Path, job: Job, path: Path, writer: str, phases: Mapping[str, Phase]) -> WorkbenchError:
    seed = job.seed if job.seed is not None else next((int(p[5:]) for p in path.parts if p.startswith("seed-")), None)
    writer_job = Job(writer, seed if phases[writer].seeded else None)
    force = " --force" if marker_path(out, writer_job.key).exists() else ""  # marked done, but the file is gone
    return WorkbenchError(
        f"phase {job.phase} needs {path}, which phase {writer} writes: run `workbench run {writer}{force} --out {out}` "
        "first"
    )


def jobs_for(names: list[str], seeds: list[int], phases: Mapping[str, Phase] = PHASES) -> list[Job]:
    return [Job(name, s) for name in names for s in (seeds if phases[name].seeded else [None])]


def _dependents(job: Job, out: Path, phases: Mapping[str, Phase]) -> list[Path]:
    """Markers of the jobs that read this job's outputs: the same seed's, or every seed's when this job is unseeded."""
    found = []
    for other, spec in phases.items():
        if other == job.phase or not any(writer == job.phase for _, writer in spec.needs):
            continue
        if job.seed is not None and spec.seeded:
            found.append(marker_path(out, Job(other, job.seed).key))
        else:
            found += [marker_path(out, other), *RunLayout(out).markers.glob(f"{other}.seed-*.done.json")]
    return found


def training_seeds(
    layout: RunLayout, names: list[str], seed: int | None, seeds: int | None, phases: Mapping[str, Phase] = PHASES
) -> list[int]:
    """``seeds`` consecutive seeds from ``seed``; with neither given, the seeds the folder's run.json names (so `run
    verify` on a 3-seed run judges all 3), else one. A phase that does not train keeps the folder's seeds even with
    ``--seed`` (which then only seeds that phase's own randomness)."""
    previous = ((_read_json(layout.run_json) or {}).get("settings") or {}).get("seeds")
    trains = any(
        phases[n].seeded or (not phases[n].always and any(st.seeds_param for st in phases[n].steps)) for n in names
    )
    if seeds is None and previous and (seed is None or not trains):
        return list(previous)
    return seed_list(seed, 1 if seeds is None else seeds)


def check_inputs(
    layout: RunLayout, names: list[str], jobs: list[Job], phases: Mapping[str, Phase], seeds: list[int]
) -> None:
    """Before anything is written: notebooks and configs exist, every prerequisite is there or made by an earlier phase
    of this run, the disk has room and the folder is writable."""
    out = layout.root
    for step in (s for n in names for s in phases[n].steps):
        for what, path in (("notebook", step.notebook), ("config", step.config)):
            if path is not None and not Path(path).is_file():
                raise WorkbenchError(f"{what} {str(path)!r} not found: run from a checkout of the repository")
    for job in jobs:
        for need, writer in phases[job.phase].needs:
            if writer in names[: names.index(job.phase)]:
                continue
            for path in _need_paths(out, job, need, writer, phases, seeds):
                if not path.exists():
                    raise _missing(out, job, path, writer, phases)
    check_free_space(out, RUN_MB + SEED_MB * len(seeds))
    check_writable(layout.run_json)


def check_markers(layout: RunLayout, jobs: list[Job], planned: dict, phases: Mapping[str, Phase], force: bool) -> None:
    """A job marked done with other parameters is an error (``force`` or another folder), never a silent mix."""
    out = str(layout.root)
    for job in jobs:
        marker = None if phases[job.phase].always or force else _read_json(layout.marker(job.key))
        if marker is None:
            continue
        then, now = _portable(marker.get("parameters"), marker.get("out") or out), _portable(planned[job.key], out)
        if then != now:
            raise WorkbenchError(
                f"phase {job.key} in {out} was done with other parameters ({_diff(then, now)}): "
                f"pass --force to rerun it or choose another --out"
            )


def _portable(params, out: str | None):
    """Parameters with the run folder's own path replaced by ``<run>``, so a moved run folder still resumes."""
    if not out:
        return params
    if isinstance(params, dict):
        return {k: _portable(v, out) for k, v in params.items()}
    if isinstance(params, list):
        return [_portable(v, out) for v in params]
    if isinstance(params, str) and (params == out or params.startswith(out + "/")):
        return "<run>" + params[len(out) :]
    return params


def _diff(old, new) -> str:
    if not isinstance(old, dict):
        return "marker without parameters"
    parts = []
    for nb in sorted(set(old) | set(new)):
        a, b = old.get(nb) or {}, new.get(nb) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                parts.append(f"{nb} {key}: {a.get(key)!r} then, {b.get(key)!r} now")
    return _one_line("; ".join(parts) or "other notebooks", 200)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The experiment engine: papermill executes each phase's notebooks, with parameters, into one run folder. What the
phases are is ``phases.PHASES``; where their files go is ``layout.RunLayout``.

A run folder holds the executed notebooks, everything they write (result JSONs, figures, data, adapters with their
resolved ``config.json``), the YAML configs the training notebooks started from (``configs/``), one marker per finished
phase and seed (``phases/<name>[.seed-<s>].done.json``: seconds and parameters), ``run.log`` (one timestamped line per
event) and ``run.json`` (each phase's status and seconds, the model, the settings, library versions and the git
commit). A phase with a marker is skipped unless ``force``, so a run stopped half way resumes at the first phase not
done; an ``always`` phase (``verify``: cheap, it judges whatever the folder holds now) always runs.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import SCHEMA_VERSION, check_free_space, check_writable, environment, write_json
from ..tasks.data import examples_file
from ..tasks.spec import DEFAULT_TASK, TaskSpec, load_task
from .layout import RunLayout
from .phases import DEFAULT_SEED, PHASES, ROOT, Phase, Step, phase_names

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


def git_commit(cwd: Path = ROOT) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rerun_command(notebook: str, params: Mapping) -> str:
    """The papermill line that reruns ``notebook`` with ``params`` (quoted for a POSIX shell), for a docs page to
    record under the table the run wrote."""
    return f"papermill {shlex.quote(notebook)} OUT.ipynb -y {shlex.quote(json.dumps(params))}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read {str(path)!r} ({exc}): delete it or choose another --out") from None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _quiet_parameter_inference(record: logging.LogRecord) -> bool:
    """papermill warns for every multi-line literal it cannot describe in a `parameters` cell; the values still work."""
    return not record.getMessage().startswith("Unable to parse line")


def _execute(step: Step, executed: Path, params: dict, cwd: Path, kernel_name: str, timeout: int | None) -> None:
    import papermill  # a kernel client: only a phase that runs a notebook needs it
    from papermill.exceptions import PapermillExecutionError

    translators = logging.getLogger("papermill.translators")
    if _quiet_parameter_inference not in translators.filters:
        translators.addFilter(_quiet_parameter_inference)

    name = step.notebook.name
    try:
        papermill.execute_notebook(
            str(step.notebook),
            str(executed),
            parameters=params,
            kernel_name=kernel_name,
            cwd=str(cwd),
            progress_bar=False,
            execution_timeout=timeout,
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # not the kernel's start-up and shut-down chatter
        )
    except PapermillExecutionError as exc:
        raise WorkbenchError(
            f"{name} failed in cell {exc.cell_index} (In [{exc.exec_count}]): {exc.ename}: {_one_line(exc.evalue)}; "
            f"the executed notebook is kept at {executed}"
        ) from None
    except Exception as exc:  # kernel died, timeout, unreadable notebook: still one line, notebook kept if written
        kept = f"; the executed notebook is kept at {executed}" if executed.exists() else ""
        raise WorkbenchError(f"{name} did not run: {type(exc).__name__}: {_one_line(exc)}{kept}") from None


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


class RunRecord:
    """run.json and run.log of one `workbench run`: every status change is saved at once. A save merges into the
    file as it is on disk, changing only what this run changed (its phases, its side run, or, for a main run, the
    settings), so side phases running at the same time in one folder (`run compare` beside `run causal`) keep each
    other's entries."""

    def __init__(self, layout: RunLayout, phases: Mapping[str, Phase], echo: Callable[[str], None]):
        self.layout, self.phases, self.echo = layout, phases, echo
        self.doc = _read_json(layout.run_json) or {}
        self.doc.setdefault("phases", {})
        self.mine: set[str] = set()  # the phase keys this run changed
        self.side: str | None = None  # the side phase this run is, if it is one

    def say(self, line: str) -> None:
        self.echo(line)
        with self.layout.run_log.open("a", encoding="utf-8") as fh:
            fh.write(f"{_now()} {line}\n")

    def start(self, phase: str, model: str, settings: dict, commit: str | None, side: bool) -> None:
        doc = self.doc
        doc.update({"schema_version": SCHEMA_VERSION, "kind": "run", "created": doc.get("created", _now())})
        if side:  # a side run (compare) into the same folder keeps the experiment's settings as they are
            self.side = phase
            doc.setdefault("side_runs", {})[phase] = {
                "model": model,
                "settings": settings,
                "git_commit": commit,
                "environment": environment(),
                "updated": _now(),
            }
        else:
            doc.update({"model": model, "settings": settings, "git_commit": commit, "environment": environment()})
        self.save()

    def set(self, key: str, **state) -> None:
        self.doc["phases"][key] = state
        self.mine.add(key)
        self.save()

    def save(self) -> None:
        self.doc["updated"] = _now()
        disk = _read_json(self.layout.run_json) or {}
        mine = {k: v for k, v in self.doc.items() if k not in ("phases", "side_runs")}
        merged = {**disk, **(mine if not self.side else {k: v for k, v in mine.items() if k not in disk})}
        merged["updated"] = self.doc["updated"]
        merged["phases"] = {**disk.get("phases", {}), **{k: self.doc["phases"][k] for k in self.mine}}
        side_runs = dict(disk.get("side_runs", {}))
        if self.side:
            side_runs[self.side] = self.doc["side_runs"][self.side]
        if side_runs:
            merged["side_runs"] = side_runs
        self.doc = merged
        _save_run(self.layout.run_json, self.doc, self.phases)


def run(
    phase: str,
    out: str | Path,
    model: str | None = None,
    quick: bool = False,
    force: bool = False,
    seed: int | None = None,
    seeds: int | None = None,
    thresholds: Mapping[str, float] | None = None,
    phases: Mapping[str, Phase] = PHASES,
    cwd: str | Path = ROOT,
    kernel_name: str = "python3",
    execution_timeout: int | None = None,
    echo: Callable[[str], None] = print,
    task: str | None = None,
) -> dict:
    """Run ``phase`` (or ``all``) into the run folder ``out``; return the run.json document.

    ``model``: None keeps the folder's model (run.json), else the embedded default. ``task``: a built-in task name or a
    task YAML file (None keeps the folder's task, else the guide's arithmetic; "arithmetic" is the guide's task, as
    before tasks were data); its data must be fetched (`workbench data fetch`) before anything is written.

    Seeded phases run once per training seed (see ``training_seeds``) into ``seed-<s>/``. Skips jobs whose marker
    exists unless ``force``; rerunning a job drops the markers of the jobs that need its outputs. ``thresholds`` go to
    the verification notebook. A failing notebook raises WorkbenchError naming notebook, cell and error.
    """
    names = phase_names(phase, phases)
    layout = RunLayout(Path(out).resolve())
    folder = (_read_json(layout.run_json) or {}) if layout.run_json.is_file() else {}
    if task is None:  # a folder's later phases (`run verify`, `run compare`) keep its task and its model
        task = (folder.get("settings") or {}).get("task_file")
    model = model or folder.get("model") or "default"
    spec = None if task in (None, DEFAULT_TASK) else load_task(task)
    if spec is not None and spec.source.builtin != DEFAULT_TASK and not examples_file(spec).is_file():
        fix = f"run `workbench data fetch {spec.name}` first" if spec.source.builtin else "check source.jsonl"
        raise WorkbenchError(f"task {spec.name!r}: its examples file {examples_file(spec)} does not exist: {fix}")
    if layout.root.exists() and not layout.root.is_dir():
        raise WorkbenchError(f"--out {str(layout.root)!r} is a file: pass a folder for the run")
    chosen = training_seeds(layout, names, seed, seeds, phases)
    jobs = jobs_for(names, chosen, phases)
    check_inputs(layout, names, jobs, phases, chosen)
    planned = {
        job.key: {
            s.notebook.name: step_parameters(s, layout.root, job, model, quick, seed, chosen, thresholds, spec)
            for s in phases[job.phase].steps
        }
        for job in jobs
    }
    check_markers(layout, jobs, planned, phases, force)

    record = RunRecord(layout, phases, echo)
    settings = {
        "phase": phase,
        "quick": quick,
        "force": force,
        "seed": seed,
        "seeds": chosen,
        "thresholds": dict(thresholds or {}),
        "kernel": kernel_name,
        "task": None if spec is None else spec.name,
        "task_file": None if spec is None else spec.path,
    }
    commit = git_commit(Path(cwd))
    record.start(phase, model, settings, commit, side=not any(phases[n].in_all for n in names))
    on = "" if spec is None else f" --task {spec.name}"
    record.say(
        f"workbench run {phase}{on} --model {model} --out {layout.root} (seeds {chosen}{', quick' if quick else ''})"
    )
    for job in jobs:
        run_job(
            job,
            record,
            planned[job.key],
            quick=quick,
            force=force,
            commit=commit,
            cwd=Path(cwd),
            kernel_name=kernel_name,
            timeout=execution_timeout,
            seeds=chosen,
        )
    return record.doc


def run_job(
    job: Job,
    record: RunRecord,
    planned: dict,
    quick: bool,
    force: bool,
    commit: str | None,
    cwd: Path,
    kernel_name: str,
    timeout: int | None,
    seeds: list[int],
) -> None:
    """One job: skipped when marked done (unless ``force``), else its notebooks in order, then its marker."""
    layout, phases = record.layout, record.phases
    out, spec, marker = layout.root, phases[job.phase], layout.marker(job.key)
    done = None if force or spec.always else _read_json(marker)  # read now: an earlier job may have dropped it
    if done is not None:
        record.say(f"phase {job.key}: done already ({done.get('seconds') or 0:.0f} s; --force reruns it)")
        if record.doc["phases"].get(job.key, {}).get("status") != "done":
            record.set(
                job.key,
                status="done",
                seconds=done.get("seconds"),
                quick=done.get("quick"),
                git_commit=done.get("git_commit"),
                notebooks=done.get("notebooks", {}),
                parameters=done.get("parameters"),
            )
        return
    for need, writer in spec.needs:
        for path in _need_paths(out, job, need, writer, phases, seeds):
            if not path.exists():
                raise _missing(out, job, path, writer, phases)
    for dependent in _dependents(job, out, phases):
        dependent.unlink(missing_ok=True)
        key = dependent.name.removesuffix(".done.json")
        stale = record.doc["phases"].get(key, {})
        if stale.get("status") == "done":  # its outputs were made from what is redone now
            stale["status"] = "stale"
            record.mine.add(key)
    marker.unlink(missing_ok=True)
    shrunk = quick and any(step.quick for step in spec.steps)  # --quick changed this job's sizes
    record.set(job.key, status="running", started=_now(), quick=shrunk, git_commit=commit, parameters=planned)

    start, notebooks = time.perf_counter(), {}
    try:
        for step in spec.steps:
            params = planned[step.notebook.name]
            if step.config is not None:
                layout.configs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(step.config, params["config"])
            executed = job.folder(out) / step.notebook.name
            executed.parent.mkdir(parents=True, exist_ok=True)
            record.say(f"phase {job.key}: {step.notebook.name} -> {executed}")
            t0 = time.perf_counter()
            _execute(step, executed, params, cwd, kernel_name, timeout)
            notebooks[step.notebook.name] = round(time.perf_counter() - t0, 3)
    except BaseException as exc:
        error = str(exc) if isinstance(exc, WorkbenchError) else type(exc).__name__
        record.doc["phases"][job.key].update(
            status="failed", seconds=round(time.perf_counter() - start, 3), notebooks=notebooks, error=error
        )
        record.save()
        record.say(f"phase {job.key}: failed: {error}")
        raise
    seconds = round(time.perf_counter() - start, 3)
    state = {"seconds": seconds, "notebooks": notebooks, "quick": shrunk, "git_commit": commit, "parameters": planned}
    write_json(
        marker,
        {
            "schema_version": SCHEMA_VERSION,
            "phase": job.phase,
            "seed": job.seed,
            "out": str(out),
            "finished": _now(),
            **state,
        },
    )
    record.set(job.key, status="done", **state)
    record.say(f"phase {job.key}: done in {seconds:.1f} s")


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


def _save_run(path: Path, doc: dict, phases: Mapping[str, Phase] = PHASES) -> None:
    """run.json; ``quick`` is true while a finished phase of the current seeds ran with --quick sizes (a later
    `run verify` without the flag does not make a quick run's numbers full ones)."""
    seeds = {f"seed-{s}" for s in (doc.get("settings") or {}).get("seeds") or []}
    current = [
        p
        for key, p in doc["phases"].items()
        if (phases[key.split(".")[0]].in_all if key.split(".")[0] in phases else True)
        and ("." not in key or key.split(".", 1)[1] in seeds)
    ]
    doc["quick"] = any(p.get("quick") for p in current if p.get("status") == "done")
    write_json(path, doc)


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

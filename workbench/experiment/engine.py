"""The experiment engine: papermill executes each phase's notebooks, with parameters, into one run folder (what it will
run and with which parameters is ``plan``'s; run.json and run.log are ``record``'s). What the
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
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.results import SCHEMA_VERSION, git_commit, write_json
from ..tasks.data import examples_file
from ..tasks.spec import DEFAULT_TASK, load_task
from .layout import RunLayout
from .phases import PHASES, ROOT, Phase, Step, phase_names
from .plan import (
    Job,
    _dependents,
    _missing,
    _need_paths,
    _one_line,
    check_inputs,
    check_markers,
    jobs_for,
    step_parameters,
    training_seeds,
)
from .record import RunRecord, _now, _read_json

__all__ = ["Job", "RunRecord", "git_commit", "rerun_command", "run", "run_job", "step_parameters"]


def rerun_command(notebook: str, params: Mapping) -> str:
    """The papermill line that reruns ``notebook`` with ``params`` (quoted for a POSIX shell), for a docs page to
    record under the table the run wrote."""
    return f"papermill {shlex.quote(notebook)} OUT.ipynb -y {shlex.quote(json.dumps(params))}"


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
    only_seed: int | None = None,
) -> dict:
    """Run ``phase`` (or ``all``) into the run folder ``out``; return the run.json document.

    ``model``: None keeps the folder's model (run.json), else the embedded default. ``task``: a built-in task name or a
    task YAML file (None keeps the folder's task, else the guide's arithmetic; "arithmetic" is the guide's task, as
    before tasks were data); its data must be fetched (`workbench data fetch`) before anything is written.

    Seeded phases run once per training seed (see ``training_seeds``) into ``seed-<s>/``. Skips jobs whose marker
    exists unless ``force``; rerunning a job drops the markers of the jobs that need its outputs. ``thresholds`` go to
    the verification notebook. ``only_seed``: run the seeded phases for this one of the run's seeds only (a study runs
    each phase and seed as its own job). A failing notebook raises WorkbenchError naming notebook, cell and error.
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
    if only_seed is not None and only_seed not in chosen:
        raise WorkbenchError(f"seed {only_seed} is not one of this run's training seeds {chosen}")
    jobs = [j for j in jobs_for(names, chosen, phases) if only_seed is None or j.seed in (None, only_seed)]
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

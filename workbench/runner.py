"""The experiment runner: papermill executes each phase's notebooks, with parameters, into one run folder.

Phases, in order: ``generate`` (the arithmetic data, ``data/``), ``baseline`` (probe and lens of the base model),
``phase1`` (dual-reward training) and ``phase2`` (routing training), both once per training seed into
``seed-<s>/``, and ``verify`` (the claims table: ``claims.json`` and ``report.md``). ``compare`` (the seed's
comparison tables: training methods, V/O vs Q/K) runs only when named.

A run folder holds the executed notebooks, everything they write (result JSONs, figures, data, adapters with their
resolved ``config.json``), the YAML configs the training notebooks started from (``configs/``), one marker per finished
phase and seed (``phases/<name>[.seed-<s>].done.json``: seconds and parameters), ``run.log`` (one timestamped line per
event) and ``run.json`` (each phase's status and seconds, the model, the settings, library versions and the git
commit). A phase with a marker is skipped unless ``force``, so a run stopped half way resumes at the first phase not
done; ``verify`` is cheap and judges whatever the folder holds now, so it always runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from .errors import WorkbenchError
from .results import SCHEMA_VERSION, atomic_write_text, check_free_space, check_writable, environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONFIGS = ROOT / "configs"
ALL = "all"
QUICK_DATA = {"train_samples": 64, "eval_samples": 32}
QUICK_TRAINING = {"max_steps": 4, **QUICK_DATA}
QUICK_COMPARE = {"steps": 2, "train_samples": 32, "eval_samples": 8}
RUN_MB, SEED_MB = 64, 32  # a full run folder measured 48 MB with 3 seeds; asked for up front, with room to spare
DEFAULT_SEED = 42  # the training notebooks' (and the seed's generator's) default
DATA = {"train_data": "data/train.jsonl", "heldout_data": "data/heldout.jsonl"}


@dataclass(frozen=True)
class Step:
    """One notebook of a phase. ``config``: a YAML file copied into ``<run>/configs/`` and passed as ``config``;
    ``paths``: parameters that name files inside the run folder (passed as absolute paths); ``seeds_param``: pass the
    run's training seeds as ``seeds``; ``thresholds_param``: pass the claim thresholds as ``thresholds``."""

    notebook: Path
    parameters: Mapping = field(default_factory=dict)
    quick: Mapping = field(default_factory=dict)
    config: Path | None = None
    paths: Mapping = field(default_factory=dict)
    seeds_param: bool = False
    thresholds_param: bool = False


@dataclass(frozen=True)
class Phase:
    """Notebooks run in order. ``needs``: (path, the phase that writes it) checked before start; the path is inside
    the seed folder when the writer is seeded, else inside the run folder. ``seeded``: runs once per training seed,
    into ``seed-<s>/``. ``always``: never skipped."""

    steps: tuple[Step, ...]
    needs: tuple[tuple[str, str], ...] = ()
    seeded: bool = False
    always: bool = False
    in_all: bool = True  # part of `workbench run all`


PHASES: dict[str, Phase] = {
    "generate": Phase((Step(NOTEBOOKS / "00_generate_data.ipynb", quick=QUICK_DATA),)),
    "baseline": Phase((Step(NOTEBOOKS / "01_baseline_probing.ipynb"), Step(NOTEBOOKS / "02_logit_lens.ipynb"))),
    "phase1": Phase((Step(NOTEBOOKS / "03_dual_reward_training.ipynb", quick=QUICK_TRAINING,
                          config=CONFIGS / "smollm2_phase1.yaml", paths=DATA),),
                    needs=((DATA["train_data"], "generate"), (DATA["heldout_data"], "generate")), seeded=True),
    "phase2": Phase((Step(NOTEBOOKS / "04_routing_training.ipynb", quick=QUICK_TRAINING,
                          config=CONFIGS / "smollm2_phase2.yaml", paths=DATA),),
                    needs=((DATA["train_data"], "generate"), (DATA["heldout_data"], "generate"),
                           ("phase1_adapter/adapter_config.json", "phase1")), seeded=True),
    "verify": Phase((Step(NOTEBOOKS / "05_verification.ipynb", seeds_param=True, thresholds_param=True),), always=True),
    "compare": Phase((Step(NOTEBOOKS / "07_comparisons.ipynb", seeds_param=True, quick=QUICK_COMPARE),), in_all=False),
}


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


def phase_names(phase: str, phases: Mapping[str, Phase] = PHASES) -> list[str]:
    """``all`` -> every phase in order; a phase name -> itself; anything else is a one-line error."""
    if phase == ALL:
        return [name for name, spec in phases.items() if spec.in_all]
    if phase not in phases:
        choices = ", ".join([ALL, *phases])
        raise WorkbenchError(f"unknown phase {phase!r}: choose one of {choices}")
    return [phase]


def marker_path(out: Path, key: str) -> Path:
    return Path(out) / "phases" / f"{key}.done.json"


def git_commit(cwd: Path = ROOT) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


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


def step_parameters(step: Step, out: Path, job: Job, model: str, quick: bool, seed: int | None,
                    seeds: list[int], thresholds: Mapping[str, float] | None = None) -> dict:
    """The values papermill injects (a dict of values, never code): model, output_dir, seed, config, data paths,
    training seeds, quick sizes. A seeded job gets its own seed; the others get ``seed`` when one is given."""
    params = {"model": model, "output_dir": str(job.folder(out)), **step.parameters}
    if job.seed is not None:
        params["seed"] = job.seed
    elif seed is not None:
        params["seed"] = seed
    if step.config is not None:
        params["config"] = str(out / "configs" / step.config.name)
    params.update({name: str(out / rel) for name, rel in step.paths.items()})
    if step.seeds_param:
        params["seeds"] = list(seeds)
    if step.thresholds_param:
        params["thresholds"] = dict(thresholds or {})
    if quick:
        params.update(step.quick)
    return params


def _need_path(out: Path, job: Job, need: str, writer: str, phases: Mapping[str, Phase]) -> Path:
    return (job.folder(out) if phases[writer].seeded else out) / need


def _quiet_parameter_inference(record: logging.LogRecord) -> bool:
    """papermill warns for every multi-line literal it cannot describe in a `parameters` cell; the values still work."""
    return not record.getMessage().startswith("Unable to parse line")


def _execute(step: Step, executed: Path, params: dict, cwd: Path, kernel_name: str, timeout: int | None) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    translators = logging.getLogger("papermill.translators")
    if _quiet_parameter_inference not in translators.filters:
        translators.addFilter(_quiet_parameter_inference)

    name = step.notebook.name
    try:
        papermill.execute_notebook(
            str(step.notebook), str(executed), parameters=params, kernel_name=kernel_name, cwd=str(cwd),
            progress_bar=False, execution_timeout=timeout,
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


def _missing(out: Path, job: Job, need: str, writer: str, phases: Mapping[str, Phase]) -> WorkbenchError:
    writer_job = Job(writer, job.seed if phases[writer].seeded else None)
    force = " --force" if marker_path(out, writer_job.key).exists() else ""  # marked done, but the file is gone
    return WorkbenchError(f"phase {job.phase} needs {_need_path(out, job, need, writer, phases)}, which phase {writer} "
                          f"writes: run `workbench run {writer}{force} --out {out}` first")


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
            found += [marker_path(out, other), *(out / "phases").glob(f"{other}.seed-*.done.json")]
    return found


def run(
    phase: str,
    out: str | Path,
    model: str = "default",
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
) -> dict:
    """Run ``phase`` (or ``all``) into the run folder ``out``; return the run.json document.

    Seeded phases run once per training seed (``seeds`` of them from ``seed``, default 42) into ``seed-<s>/``; with
    neither given, the seeds the folder's run.json names (so `run verify` on a 3-seed run judges all 3), else one.
    Skips jobs whose marker exists unless ``force`` (``always`` phases never skip); a marker written with other
    parameters is an error (rerun with ``force`` or use another folder) rather than a silent mix of settings. Rerunning
    a job drops the markers of the jobs that need its outputs. ``thresholds`` go to the verification notebook. A failing
    notebook raises WorkbenchError naming notebook, cell and error.
    """
    names = phase_names(phase, phases)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--out {str(out)!r} is a file: pass a folder for the run")
    previous = ((_read_json(out / "run.json") or {}).get("settings") or {}).get("seeds")
    trains = any(phases[n].seeded or (not phases[n].always and any(st.seeds_param for st in phases[n].steps))
                 for n in names)  # phases whose results depend on the training seeds (verify only reads them)
    if seeds is None and previous and (seed is None or not trains):  # `run verify`, `run baseline --seed 0`: keep them
        training_seeds = list(previous)
    else:
        training_seeds = seed_list(seed, 1 if seeds is None else seeds)
    jobs = jobs_for(names, training_seeds, phases)
    for step in (s for n in names for s in phases[n].steps):
        if not Path(step.notebook).is_file():
            raise WorkbenchError(f"notebook {str(step.notebook)!r} not found: run from a checkout of the repository")
        if step.config is not None and not Path(step.config).is_file():
            raise WorkbenchError(f"config {str(step.config)!r} not found: run from a checkout of the repository")
    for job in jobs:  # fail before writing anything when a prerequisite is neither there nor part of this run
        for need, writer in phases[job.phase].needs:
            if writer not in names[: names.index(job.phase)] and not _need_path(out, job, need, writer, phases).exists():
                raise _missing(out, job, need, writer, phases)
    check_free_space(out, RUN_MB + SEED_MB * len(training_seeds))
    check_writable(out / "run.json")

    planned = {job.key: {s.notebook.name: step_parameters(s, out, job, model, quick, seed, training_seeds, thresholds)
                         for s in phases[job.phase].steps} for job in jobs}
    for job in jobs:
        if phases[job.phase].always:
            continue
        marker = _read_json(marker_path(out, job.key))
        if marker is None or force:
            continue
        then, now = _portable(marker.get("parameters"), marker.get("out") or str(out)), _portable(planned[job.key], str(out))
        if then != now:
            raise WorkbenchError(f"phase {job.key} in {out} was done with other parameters ({_diff(then, now)}): "
                                 f"pass --force to rerun it or choose another --out")

    log_path = out / "run.log"

    def say(line: str) -> None:
        echo(line)
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(f"{_now()} {line}\n")

    settings = {"phase": phase, "quick": quick, "force": force, "seed": seed, "seeds": training_seeds,
                "thresholds": dict(thresholds or {}), "kernel": kernel_name}
    commit = git_commit(Path(cwd))
    doc = _read_json(out / "run.json") or {}
    doc.update({"schema_version": SCHEMA_VERSION, "kind": "run", "created": doc.get("created", _now()), "updated": _now()})
    if any(phases[n].in_all for n in names):  # the experiment's own settings
        doc.update({"model": model, "settings": settings, "git_commit": commit, "environment": environment()})
    else:  # a side run (compare) into the same folder keeps the experiment's settings as they are
        doc.setdefault("side_runs", {})[phase] = {"model": model, "settings": settings, "git_commit": commit,
                                                  "environment": environment(), "updated": _now()}
    doc.setdefault("phases", {})
    run_json = out / "run.json"
    _save_run(run_json, doc, phases)
    say(f"workbench run {phase} --model {model} --out {out} (seeds {training_seeds}{', quick' if quick else ''})")

    for job in jobs:
        spec = phases[job.phase]
        # read now: an earlier job may have dropped it
        done = None if force or spec.always else _read_json(marker_path(out, job.key))
        if done is not None:
            say(f"phase {job.key}: done already ({done.get('seconds') or 0:.0f} s; --force reruns it)")
            if doc["phases"].get(job.key, {}).get("status") != "done":
                doc["phases"][job.key] = {"status": "done", "seconds": done.get("seconds"), "quick": done.get("quick"),
                                          "git_commit": done.get("git_commit"),
                                          "notebooks": done.get("notebooks", {}), "parameters": done.get("parameters")}
                _save_run(run_json, doc, phases)
            continue
        for need, writer in spec.needs:
            if not _need_path(out, job, need, writer, phases).exists():
                raise _missing(out, job, need, writer, phases)
        for marker in _dependents(job, out, phases):
            marker.unlink(missing_ok=True)
            stale = marker.name.removesuffix(".done.json")
            if doc["phases"].get(stale, {}).get("status") == "done":  # its outputs were made from what is redone now
                doc["phases"][stale]["status"] = "stale"
        marker_path(out, job.key).unlink(missing_ok=True)
        shrunk = quick and any(step.quick for step in spec.steps)  # --quick changed this job's sizes
        doc["phases"][job.key] = {"status": "running", "started": _now(), "quick": shrunk,
                                  "git_commit": commit, "parameters": planned[job.key]}
        doc["updated"] = _now()
        _save_run(run_json, doc, phases)

        start = time.perf_counter()
        notebooks = {}
        try:
            for step in spec.steps:
                params = planned[job.key][step.notebook.name]
                if step.config is not None:
                    (out / "configs").mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(step.config, params["config"])
                executed = job.folder(out) / step.notebook.name
                executed.parent.mkdir(parents=True, exist_ok=True)
                say(f"phase {job.key}: {step.notebook.name} -> {executed}")
                t0 = time.perf_counter()
                _execute(step, executed, params, Path(cwd), kernel_name, execution_timeout)
                notebooks[step.notebook.name] = round(time.perf_counter() - t0, 3)
        except BaseException as exc:
            error = str(exc) if isinstance(exc, WorkbenchError) else type(exc).__name__
            doc["phases"][job.key].update(status="failed", seconds=round(time.perf_counter() - start, 3),
                                          notebooks=notebooks, error=error)
            doc["updated"] = _now()
            _save_run(run_json, doc, phases)
            say(f"phase {job.key}: failed: {error}")
            raise
        seconds = round(time.perf_counter() - start, 3)
        _write_json(marker_path(out, job.key), {"schema_version": SCHEMA_VERSION, "phase": job.phase, "seed": job.seed,
                                                "out": str(out),
                                                "finished": _now(), "seconds": seconds, "notebooks": notebooks,
                                                "quick": shrunk, "git_commit": commit,
                                                "parameters": planned[job.key]})
        doc["phases"][job.key] = {"status": "done", "seconds": seconds, "notebooks": notebooks, "quick": shrunk,
                                  "git_commit": commit,
                                  "parameters": planned[job.key]}
        doc["updated"] = _now()
        _save_run(run_json, doc, phases)
        say(f"phase {job.key}: done in {seconds:.1f} s")
    return doc


def _portable(params, out: str | None):
    """Parameters with the run folder's own path replaced by ``<run>``, so a moved run folder still resumes."""
    if not out:
        return params
    if isinstance(params, dict):
        return {k: _portable(v, out) for k, v in params.items()}
    if isinstance(params, list):
        return [_portable(v, out) for v in params]
    if isinstance(params, str) and (params == out or params.startswith(out + "/")):
        return "<run>" + params[len(out):]
    return params


def _save_run(path: Path, doc: dict, phases: Mapping[str, Phase] = PHASES) -> None:
    """run.json; ``quick`` is true while a finished phase of the current seeds ran with --quick sizes (a later
    `run verify` without the flag does not make a quick run's numbers full ones)."""
    seeds = {f"seed-{s}" for s in (doc.get("settings") or {}).get("seeds") or []}
    current = [p for key, p in doc["phases"].items()
               if (phases[key.split(".")[0]].in_all if key.split(".")[0] in phases else True)
               and ("." not in key or key.split(".", 1)[1] in seeds)]
    doc["quick"] = any(p.get("quick") for p in current if p.get("status") == "done")
    _write_json(path, doc)


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

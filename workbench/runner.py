"""The experiment runner: papermill executes each phase's notebooks, with parameters, into one run folder.

A run folder holds the executed notebooks, everything they write (result JSONs, figures, data, adapters with their
resolved ``config.json``), the YAML configs the training notebooks started from (``configs/``), one marker per finished
phase (``phases/<name>.done.json``: seconds and parameters) and ``run.json`` (each phase's status and seconds, the model,
the settings, library versions and the git commit). A phase with a marker is skipped unless ``force``; so a run stopped
half way resumes at the first phase not done. Data generation happens inside notebooks 03 and 04, so there is no
separate ``generate`` phase.
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
from .results import SCHEMA_VERSION, atomic_write_text, check_writable, environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONFIGS = ROOT / "configs"
ALL = "all"
QUICK_TRAINING = {"max_steps": 4, "train_samples": 64, "eval_samples": 32}


@dataclass(frozen=True)
class Step:
    """One notebook of a phase. ``config``: a YAML file copied into ``<run>/configs/`` and passed as ``config``."""

    notebook: Path
    parameters: Mapping = field(default_factory=dict)
    quick: Mapping = field(default_factory=dict)
    config: Path | None = None


@dataclass(frozen=True)
class Phase:
    """Notebooks run in order. ``needs``: (path inside the run folder, the phase that writes it) checked before start."""

    steps: tuple[Step, ...]
    needs: tuple[tuple[str, str], ...] = ()


PHASES: dict[str, Phase] = {
    "baseline": Phase((Step(NOTEBOOKS / "01_baseline_probing.ipynb"), Step(NOTEBOOKS / "02_logit_lens.ipynb"))),
    "phase1": Phase((Step(NOTEBOOKS / "03_dual_reward_training.ipynb", quick=QUICK_TRAINING,
                          config=CONFIGS / "smollm2_phase1.yaml"),)),
    "phase2": Phase((Step(NOTEBOOKS / "04_routing_training.ipynb", quick=QUICK_TRAINING,
                          config=CONFIGS / "smollm2_phase2.yaml"),),
                    needs=(("phase1_adapter/adapter_config.json", "phase1"),)),
}


def phase_names(phase: str, phases: Mapping[str, Phase] = PHASES) -> list[str]:
    """``all`` -> every phase in order; a phase name -> itself; anything else is a one-line error."""
    if phase == ALL:
        return list(phases)
    if phase not in phases:
        choices = ", ".join([ALL, *phases])
        raise WorkbenchError(f"unknown phase {phase!r}: choose one of {choices}")
    return [phase]


def marker_path(out: Path, name: str) -> Path:
    return Path(out) / "phases" / f"{name}.done.json"


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


def step_parameters(step: Step, out: Path, model: str, quick: bool, seed: int | None) -> dict:
    """The values papermill injects (a dict of values, never code): model, output_dir, seed, config, quick sizes."""
    params = {"model": model, "output_dir": str(out), **step.parameters}
    if seed is not None:
        params["seed"] = seed
    if step.config is not None:
        params["config"] = str(out / "configs" / step.config.name)
    if quick:
        params.update(step.quick)
    return params


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
    model: str = "default",
    quick: bool = False,
    force: bool = False,
    seed: int | None = None,
    phases: Mapping[str, Phase] = PHASES,
    cwd: str | Path = ROOT,
    kernel_name: str = "python3",
    execution_timeout: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run ``phase`` (or ``all``) into the run folder ``out``; return the run.json document.

    Skips phases whose marker exists unless ``force``; a marker written with other parameters is an error (rerun with
    ``force`` or use another folder) rather than a silent mix of settings. Rerunning a phase drops the markers of the
    phases that need its outputs. A failing notebook raises WorkbenchError naming notebook, cell and error.
    """
    names = phase_names(phase, phases)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--out {str(out)!r} is a file: pass a folder for the run")
    for step in (s for n in names for s in phases[n].steps):
        if not Path(step.notebook).is_file():
            raise WorkbenchError(f"notebook {str(step.notebook)!r} not found: run from a checkout of the repository")
        if step.config is not None and not Path(step.config).is_file():
            raise WorkbenchError(f"config {str(step.config)!r} not found: run from a checkout of the repository")
    for name in names:  # fail before writing anything when a prerequisite is neither there nor part of this run
        for need, writer in phases[name].needs:
            if writer not in names[: names.index(name)] and not (out / need).exists():
                raise WorkbenchError(f"phase {name} needs {out / need}, which phase {writer} writes: "
                                     f"run `workbench run {writer} --out {out}` first")
    check_writable(out / "run.json")

    planned = {n: {s.notebook.name: step_parameters(s, out, model, quick, seed) for s in phases[n].steps} for n in names}
    for name in names:
        marker = _read_json(marker_path(out, name))
        if marker is not None and not force and marker.get("parameters") != planned[name]:
            raise WorkbenchError(
                f"phase {name} in {out} was done with other parameters ({_diff(marker.get('parameters'), planned[name])}): "
                f"pass --force to rerun it or choose another --out"
            )

    settings = {"phase": phase, "quick": quick, "force": force, "seed": seed, "kernel": kernel_name}
    doc = _read_json(out / "run.json") or {}
    doc.update({
        "schema_version": SCHEMA_VERSION, "kind": "run", "created": doc.get("created", _now()), "updated": _now(),
        "model": model, "settings": settings, "git_commit": git_commit(Path(cwd)), "environment": environment(),
    })
    doc.setdefault("phases", {})
    run_json = out / "run.json"
    _write_json(run_json, doc)

    for name in names:
        done = None if force else _read_json(marker_path(out, name))  # read now: an earlier phase may have dropped it
        if done is not None:
            echo(f"phase {name}: done already ({done.get('seconds') or 0:.0f} s; --force reruns it)")
            if doc["phases"].get(name, {}).get("status") != "done":
                doc["phases"][name] = {"status": "done", "seconds": done.get("seconds"),
                                       "notebooks": done.get("notebooks", {}), "parameters": done.get("parameters")}
                _write_json(run_json, doc)
            continue
        for need, writer in phases[name].needs:
            if not (out / need).exists():
                raise WorkbenchError(f"phase {name} needs {out / need}, which phase {writer} writes: "
                                     f"run `workbench run {writer} --out {out}` first")
        for other, spec in phases.items():  # phases that read this one's outputs must be redone after it
            if other != name and any(writer == name for _, writer in spec.needs):
                marker_path(out, other).unlink(missing_ok=True)
        marker_path(out, name).unlink(missing_ok=True)
        doc["phases"][name] = {"status": "running", "started": _now(), "parameters": planned[name]}
        doc["updated"] = _now()
        _write_json(run_json, doc)

        start = time.perf_counter()
        notebooks = {}
        try:
            for step in phases[name].steps:
                params = planned[name][step.notebook.name]
                if step.config is not None:
                    (out / "configs").mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(step.config, params["config"])
                executed = out / step.notebook.name
                echo(f"phase {name}: {step.notebook.name} -> {executed}")
                t0 = time.perf_counter()
                _execute(step, executed, params, Path(cwd), kernel_name, execution_timeout)
                notebooks[step.notebook.name] = round(time.perf_counter() - t0, 3)
        except BaseException as exc:
            doc["phases"][name].update(status="failed", seconds=round(time.perf_counter() - start, 3),
                                       notebooks=notebooks, error=str(exc) if isinstance(exc, WorkbenchError) else type(exc).__name__)
            doc["updated"] = _now()
            _write_json(run_json, doc)
            raise
        seconds = round(time.perf_counter() - start, 3)
        _write_json(marker_path(out, name), {"schema_version": SCHEMA_VERSION, "phase": name, "finished": _now(),
                                             "seconds": seconds, "notebooks": notebooks, "parameters": planned[name]})
        doc["phases"][name] = {"status": "done", "seconds": seconds, "notebooks": notebooks, "parameters": planned[name]}
        doc["updated"] = _now()
        _write_json(run_json, doc)
        echo(f"phase {name}: done in {seconds:.1f} s")
    return doc


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

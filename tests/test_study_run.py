"""Studies run for real on tiny random Llamas (quick sizes, one thread per job): inline, on submitit's local executor
and through sbatch on the one-node SLURM cluster (tests/slurm.py). Each executor must end with the same result
records as the inline study; a job killed mid-way (SIGKILL of a local job, scancel of a SLURM one) leaves its
dependents not run, the status names it, and ``--resume`` finishes with the same records again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import CLASS_WORDS, FIXTURES, build_tiny_llama, build_tiny_tokenizer
from helpers import assert_one_line_error, cli
from slurm import slurm_cluster  # noqa: F401

from workbench.study.driver import run_study, status_text, study_status_rows
from workbench.study.jobs import read_state, study_jobs
from workbench.study.spec import load_study
from workbench.study.status import read_submissions

pytestmark = pytest.mark.integration

VOLATILE = {"created", "updated", "finished", "started", "git_commit", "environment", "timings_s"}


@pytest.fixture(scope="module")
def study_world(tmp_path_factory):
    """Two tiny models (4 layers, different weights) whose tokenizer has the operation and sentiment words, and the
    committed VADER fixture as the task cache; WORKBENCH_CACHE points there for this module."""
    root = tmp_path_factory.mktemp("study")
    for name, seed in (("tiny-a", 0), ("tiny-b", 1)):
        tokenizer = build_tiny_tokenizer(CLASS_WORDS)
        build_tiny_llama(len(tokenizer), seed=seed).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    shutil.copytree(FIXTURES / "tasks" / "vader", root / "cache" / "tasks" / "vader")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE", str(root / "cache"))
        mp.setenv("OMP_NUM_THREADS", "1")
        yield root


def study_file(root: Path, name: str, models: list[str], tasks: list[str], executor: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(
        f"models: {[str(root / m) for m in models]}\ntasks: {tasks}\nseeds: 2\nphases: [generate, phase1]\nquick: true\n"
        f"executor: {{kind: {executor}, max_jobs: 2, poll_seconds: 0.5}}\nresources:\n  default: {{cpus: 1, minutes: 20}}\n"
        f"out: {root / name}\n",
        encoding="utf-8",
    )
    return path


def _normal(value, run: str):
    if isinstance(value, dict):  # peft writes target_modules from a set: its order follows the process's hash seed
        value = {**value, **({"target_modules": sorted(value["target_modules"])} if "target_modules" in value else {})}
        return {k: _normal(v, run) for k, v in value.items() if k not in VOLATILE and "second" not in k}
    if isinstance(value, list):
        return [_normal(v, run) for v in value]
    return value.replace(run, "<run>") if isinstance(value, str) else value


def records(run_dir: Path) -> dict[str, object]:
    """What a run folder measured: its data, each seed's adapter weights (sha256), metrics and result JSONs, with
    times, paths and commits taken out (the no-number-change comparison of the contract issue, as a function)."""
    out: dict[str, object] = {}
    for path in sorted(run_dir.rglob("*")):
        rel = str(path.relative_to(run_dir))
        if rel.startswith(("phases/", "configs/")) or rel in ("run.json", "run.log") or not path.is_file():
            continue
        if path.suffix == ".safetensors":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".json":
            out[rel] = _normal(json.loads(path.read_text(encoding="utf-8")), str(run_dir))
        elif path.suffix == ".jsonl":
            out[rel] = [_normal(json.loads(line), str(run_dir)) for line in path.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def inline(study_world):
    """The reference: model A on sentiment, 2 seeds, generate and phase 1, one job after another in this process."""
    path = study_file(study_world, "inline", ["tiny-a"], ["sentiment"], "inline")
    rows = run_study(path, echo=lambda line: None)
    return load_study(path), rows


def test_inline_study_runs_every_job_in_order(inline):
    study, rows = inline
    assert [r["status"] for r in rows] == ["done"] * 3
    out = Path(study.out)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["state", "tiny-a--sentiment"]
    for run in ("tiny-a--sentiment",):
        doc = json.loads((out / run / "run.json").read_text())
        assert {k: p["status"] for k, p in doc["phases"].items()} == {
            "generate": "done", "phase1.seed-42": "done", "phase1.seed-43": "done",
        }  # fmt: skip
        assert doc["settings"]["seeds"] == [42, 43]
        assert (out / run / "seed-43" / "phase1_adapter" / "adapter_model.safetensors").is_file()
    assert "| sentiment (quick) | " in (out / "table.md").read_text()


def _descendants_killed(pid: int) -> None:
    proc = psutil.Process(pid)
    for p in [*proc.children(recursive=True), proc]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.3)
    return found


def test_local_study_killed_and_resumed_equals_inline(study_world, inline, capsys):
    """Submitit's local executor: two jobs at a time. phase1.seed-43 of sentiment is SIGKILLed mid-way (the job's whole
    process tree); the study then ends with that job failed and the rest done, and --resume reruns only it."""
    path = study_file(study_world, "local", ["tiny-a"], ["sentiment"], "local")
    study = load_study(path)
    victim = next(j for j in study_jobs(study) if j.key == "tiny-a--sentiment/phase1.seed-43")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "workbench.cli", "study", "run", str(path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _until(lambda: read_state(Path(study.out), victim).get("status") == "running", 300, "the victim starting")
        time.sleep(3)  # inside its notebook
        _descendants_killed(int(read_submissions(Path(study.out))[victim.key]["job_id"]))
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 1, stderr
    assert "| tiny-a | sentiment | phase1 | 43 | failed |" in stdout
    assert "- tiny-a--sentiment/phase1.seed-43: failed: ended without finishing" in stdout
    assert stdout.count("| done |") == 2
    code, out, _ = cli(capsys, "study", "run", path, "--resume")
    assert code == 0 and "1 to submit" in out and out.count("| done |") == 3
    assert records(Path(study.out) / "tiny-a--sentiment") == records(Path(inline[0].out) / "tiny-a--sentiment")


@pytest.mark.slurm
def test_slurm_study_scancel_and_resume_equals_inline(study_world, inline, slurm_cluster, capsys):  # noqa: F811
    """2 models x 2 tasks x 2 seeds through sbatch: dependencies as afterok, at most two jobs at once. scancel of model
    A's sentiment generate while it runs cancels it, and SLURM removes its phase-1 jobs (their dependency can never be
    met); the status says which and why; --resume --wait finishes, and model A's sentiment records equal the inline
    study's."""
    path = study_file(study_world, "slurm", ["tiny-a", "tiny-b"], ["sentiment", "arithmetic"], "slurm")
    study = load_study(path)
    out = Path(study.out)
    victim = next(j for j in study_jobs(study) if j.key == "tiny-a--sentiment/generate")
    rows = run_study(path, echo=lambda line: None)  # submits and returns
    assert len(rows) == 12 and all(r["job"] for r in rows)
    subs = read_submissions(out)
    script = out / "logs" / "tiny-a--sentiment" / f"{subs['tiny-a--sentiment/phase1.seed-42']['job_id']}_submission.sh"
    text = script.read_text()
    assert (
        f"afterok:{subs[victim.key]['job_id']}" in text and "singleton" in text and "--kill-on-invalid-dep=yes" in text
    )
    _until(lambda: read_state(out, victim).get("status") == "running", 300, "the victim starting")
    subprocess.run(["scancel", subs[victim.key]["job_id"]], check=True)
    _until(lambda: all(r["status"] in ("done", "failed", "cancelled", "not run")
                       for r in study_status_rows(path)), 600, "the study settling")  # fmt: skip
    status = status_text(path)
    assert (
        "| tiny-a | sentiment | generate |  | failed |" in status
        or "| tiny-a | sentiment | generate |  | cancelled |" in status
    )
    for seed in (42, 43):
        assert f"| tiny-a | sentiment | phase1 | {seed} | not run |" in status
        assert f"- tiny-a--sentiment/phase1.seed-{seed}: not run: tiny-a--sentiment/generate" in status
    assert status.count("| done |") == 9
    code, stdout, _ = cli(capsys, "study", "run", path, "--resume", "--wait")
    assert code == 0 and "3 to submit" in stdout and stdout.count("| done |") == 12
    assert records(out / "tiny-a--sentiment") == records(Path(inline[0].out) / "tiny-a--sentiment")
    assert records(out / "tiny-b--sentiment") != records(out / "tiny-a--sentiment")  # the models differ
    table = (out / "table.md").read_text()
    assert table.count("(quick) |") == 4


@pytest.mark.slurm
def test_a_resource_slurm_refuses_is_one_line(study_world, slurm_cluster, capsys):  # noqa: F811
    """A GPU on a cluster without GRES: sbatch refuses the first job; one line naming it and SLURM's reason."""
    path = study_file(study_world, "gpu", ["tiny-a"], ["sentiment"], "slurm")
    path.write_text(path.read_text().replace("{cpus: 1, minutes: 20}", "{cpus: 1, gpus: 1, minutes: 20}"))
    code, _, err = cli(capsys, "study", "run", path)
    assert_one_line_error(code, err, "sbatch refused job tiny-a--sentiment/generate")
    assert read_submissions(study_world / "gpu") == {}

"""Studies without running a job: the study file's checks, the job graph, the status of each job from a study folder's
files, the lock and --resume's checks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli

from workbench.core.errors import WorkbenchError
from workbench.experiment.layout import RunLayout
from workbench.study.driver import _check_folder, _to_run, study_lock
from workbench.study.jobs import dependencies, state_path, study_jobs
from workbench.study.spec import load_study, slug
from workbench.study.status import status_table, study_status

ROOT = Path(__file__).resolve().parents[1]
STUDY = """\
models: [default]
tasks: [arithmetic, sentiment]
seeds: 2
phases: [generate, phase1, phase2, verify]
quick: true
executor: {kind: local, max_jobs: 2}
resources:
  default: {cpus: 1, minutes: 30}
  phase1: {cpus: 2, mem_gb: 4}
"""


def write(tmp_path, text: str, name: str = "study.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def study(tmp_path):
    return load_study(write(tmp_path, STUDY + f"out: {tmp_path / 'out'}\n"))


def test_jobs_and_what_each_waits_for(study):
    jobs = study_jobs(study)
    assert [j.key for j in jobs[:6]] == [
        "default--arithmetic/generate",
        "default--arithmetic/phase1.seed-42",
        "default--arithmetic/phase1.seed-43",
        "default--arithmetic/phase2.seed-42",
        "default--arithmetic/phase2.seed-43",
        "default--arithmetic/verify",
    ]
    assert len(jobs) == 12
    waits = {j.key: sorted(d.key for d in dependencies(j, jobs)) for j in jobs if j.run == "default--sentiment"}
    assert waits == {
        "default--sentiment/generate": [],
        "default--sentiment/phase1.seed-42": ["default--sentiment/generate"],
        "default--sentiment/phase1.seed-43": ["default--sentiment/generate"],
        "default--sentiment/phase2.seed-42": ["default--sentiment/generate", "default--sentiment/phase1.seed-42"],
        "default--sentiment/phase2.seed-43": ["default--sentiment/generate", "default--sentiment/phase1.seed-43"],
        "default--sentiment/verify": sorted(
            f"default--sentiment/{k}"
            for k in ("generate", "phase1.seed-42", "phase1.seed-43", "phase2.seed-42", "phase2.seed-43")  # fmt: skip
        ),
    }


def test_verify_waits_for_the_side_phases_it_judges_not_for_the_others(tmp_path):
    text = STUDY.replace("[generate, phase1, phase2, verify]", "[all, compare, route, readouts]")
    jobs = study_jobs(load_study(write(tmp_path, text + f"out: {tmp_path / 'out'}\n")))
    verify = next(j for j in jobs if j.key == "default--arithmetic/verify")
    waits = {d.phase for d in dependencies(verify, jobs)}
    assert waits == {"generate", "baseline", "phase1", "phase2", "readouts"}  # not compare, not route
    readouts = next(j for j in jobs if j.key == "default--arithmetic/readouts")
    assert sorted(d.key for d in dependencies(readouts, jobs)) == [
        "default--arithmetic/generate", "default--arithmetic/phase1.seed-42", "default--arithmetic/phase1.seed-43"
    ]  # fmt: skip


def test_resources_fall_back_to_default(study):
    assert study.resources_for("phase1").model_dump() == {
        "cpus": 2, "gpus": 0, "mem_gb": 4.0, "minutes": 30, "partition": None,
    }  # fmt: skip
    assert study.resources_for("verify").cpus == 1 and study.resources_for("verify").minutes == 30


def test_all_expands_and_folder_names():
    assert slug("google/gemma-3-270m") == "google-gemma-3-270m"
    assert slug("/tmp/models/llama-22/") == "llama-22" and slug("tasks/mine.yaml") == "mine"


@pytest.mark.parametrize(
    "text, needles",
    [
        (STUDY.replace("quick:", "quik:"), ("unknown key 'quik'", "did you mean 'quick'")),
        (STUDY.replace("kind: local", "kind: lsf"), ("executor.kind", "'inline', 'local' or 'slurm'")),
        (STUDY.replace("phase2, verify", "phase3, verify"), ("unknown phase 'phase3'",)),
        (STUDY.replace("generate, phase1", "phase1"), ("phase phase1 needs", "add generate to phases")),
        (STUDY.replace("[default]", "[nonexistent-model-dir]"), ("models:", "unknown model 'nonexistent-model-dir'")),
        (STUDY.replace("sentiment]", "sentimant]"), ("tasks:", "unknown task 'sentimant'")),
        (STUDY.replace("  phase1: {", "  phase9: {"), ("resources for unknown phase 'phase9'",)),
        (STUDY.replace("mem_gb: 4", "mem_gb: -4"), ("resources.phase1.mem_gb",)),
        ("- just\n- a list\n", ("expected a mapping",)),
    ],
)
def test_a_bad_study_file_is_one_line(tmp_path, capsys, text, needles):
    code, _, err = cli(capsys, "study", "run", write(tmp_path, text))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "studies").exists()


def test_a_missing_study_file(tmp_path, capsys):
    assert_one_line_error(*cli(capsys, "study", "status", tmp_path / "nope.yaml")[::2], "does not exist")


def test_slurm_unreachable_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no squeue
    path = write(tmp_path, STUDY.replace("kind: local", "kind: slurm") + f"out: {tmp_path / 'out'}\n")
    code, _, err = cli(capsys, "study", "run", path)
    assert_one_line_error(code, err, "executor slurm", "sbatch/squeue are not on PATH")
    assert not (tmp_path / "out").exists()


def _mark_done(study_dir, job, seconds=3.0):
    marker = RunLayout(study_dir / job.run).marker(job.run_key)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"seconds": seconds}), encoding="utf-8")


def test_status_names_failures_and_what_they_stopped(study, tmp_path):
    study_dir = tmp_path / "out"
    jobs = study_jobs(study)
    by = {j.key: j for j in jobs}
    _mark_done(study_dir, by["default--arithmetic/generate"], 12.0)
    state = state_path(study_dir, by["default--arithmetic/phase1.seed-42"])
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"status": "failed", "error": "03_dual_reward_training.ipynb failed in cell 7"}))
    subs = {j.key: {"job_id": str(900 + i), "executor": "slurm"} for i, j in enumerate(jobs)}
    (study_dir / "jobs.json").write_text(json.dumps(subs))
    queue = {"903": ("PENDING", "DependencyNeverSatisfied"), "902": ("RUNNING", "None")}  # 902: phase1.seed-43
    rows = {r["key"]: r for r in study_status(study_dir, jobs, queue)}
    assert (
        rows["default--arithmetic/generate"]["status"] == "done"
        and rows["default--arithmetic/generate"]["seconds"] == 12.0
    )
    assert rows["default--arithmetic/phase1.seed-42"]["status"] == "failed"
    assert rows["default--arithmetic/phase1.seed-43"]["status"] == "running"
    assert (rows["default--arithmetic/phase2.seed-42"]["status"], rows["default--arithmetic/phase2.seed-42"]["why"]) == (
        "not run", "default--arithmetic/phase1.seed-42 failed",
    )  # fmt: skip
    assert rows["default--arithmetic/verify"]["status"] == "not run"
    assert rows["default--sentiment/generate"]["status"] == "cancelled"  # left the queue without starting
    text = status_table(list(rows.values()))
    assert "| default | arithmetic | phase1 | 42 | failed | 901 |" in text
    assert "- default--arithmetic/phase1.seed-42: failed: 03_dual_reward_training.ipynb failed in cell 7" in text


def test_resume_runs_what_is_missing_and_what_reads_it(study, tmp_path):
    study_dir = tmp_path / "out"
    jobs = study_jobs(study)
    for job in jobs:
        _mark_done(study_dir, job)
    redo = next(j for j in jobs if j.key == "default--sentiment/phase1.seed-43")
    RunLayout(study_dir / redo.run).marker(redo.run_key).unlink()
    assert [j.key for j in _to_run(study_dir, jobs, live=set())] == [
        "default--sentiment/phase1.seed-43",
        "default--sentiment/phase2.seed-43",
        "default--sentiment/verify",
    ]
    assert _to_run(study_dir, jobs, live={"default--sentiment/phase1.seed-43"}) == []


def test_resume_refuses_a_folder_made_with_another_study(study, tmp_path):
    study_dir = tmp_path / "out"
    _check_folder(study, study_dir, resume=False)
    with pytest.raises(WorkbenchError, match="exists: pass --resume"):
        _check_folder(study, study_dir, resume=False)
    other = study.model_copy(update={"seeds": 3})
    with pytest.raises(WorkbenchError, match="made with another study file"):
        _check_folder(other, study_dir, resume=True)
    _check_folder(
        study.model_copy(update={"executor": study.executor.model_copy(update={"max_jobs": 5})}), study_dir, resume=True
    )  # fmt: skip  (the executor may change between runs)


def test_one_study_run_at_a_time(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def hold():
        with study_lock(tmp_path / "out"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(10)
    try:
        with pytest.raises(WorkbenchError, match="being written by another"), study_lock(tmp_path / "out"):
            pass
    finally:
        release.set()
        thread.join()
    with study_lock(tmp_path / "out"):
        pass


def test_study_record_refuses_an_unfinished_study(study, tmp_path):
    from workbench.study.report import study_record

    with pytest.raises(WorkbenchError, match=r"not finished \(12 jobs not done, first default--arithmetic/generate\)"):
        study_record(study.path)


def test_study_page_from_a_hand_built_record():
    from workbench.experiment.study_page import overhead_text, page_text

    jobs = [
        {"key": "m--t/generate", "phase": "generate", "seed": None, "seconds": 30.0, "git_commit": "abc"},
        {"key": "m--t/phase1.seed-42", "phase": "phase1", "seed": 42, "seconds": 100.0, "git_commit": "abc"},
        {"key": "m--t/phase1.seed-43", "phase": "phase1", "seed": 43, "seconds": 120.0, "git_commit": "abc"},
    ]
    record = {
        "file": "configs/studies/x.yaml",
        "study": {"models": ["default"], "tasks": ["t"], "seeds": 2, "phases": ["generate", "phase1"],
                  "executor": {"kind": "local", "max_jobs": 2}},  # fmt: skip
        "jobs": jobs, "wall_seconds": 150.0, "job_seconds": 250.0, "runs": [],
    }  # fmt: skip
    text = page_text(record)
    assert "| ratio | 1.67 |" in text and "git commit `abc`" in text
    assert "| phase1 | 2 | 110 | 120 |" in text and "| generate | 1 | 30 | 30 |" in text
    overhead = {"file": "s.yaml", "where": "here", "git_commit": "abc", "jobs": [
        {"key": "a", "dependency_s": 0.0, "schedule_s": 0.2, "startup_s": 1.8, "phase_s": 20.0, "ratio": 0.1},
        {"key": "b", "dependency_s": 20.5, "schedule_s": 0.4, "startup_s": 2.2, "phase_s": 52.0, "ratio": 0.05},
    ]}  # fmt: skip
    text = overhead_text(overhead)
    assert "| b | 20.5 | 0.4 | 2.2 | 52.0 | 0.050 |" in text
    assert "eligible → started 0.30 s, started → first line 2.00 s, overhead / phase 0.075" in text


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_the_committed_study_files_are_valid(path):
    study = load_study(path)
    assert study_jobs(study) and study.out.startswith("runs/studies/")


def test_resume_on_a_new_folder_starts_it_and_refuses_a_foreign_one(study, tmp_path):
    study_dir = tmp_path / "out"
    with study_lock(study_dir):  # the lock file alone does not make a folder foreign
        _check_folder(study, study_dir, resume=True)
    assert (study_dir / "study.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WorkbenchError, match="is not a study folder"):
        _check_folder(study, other, resume=True)

"""The runner (`workbench run`): papermill executes each phase's notebooks into one run folder, with the parameters as
values; a done phase is skipped unless forced; a failing cell is one line naming notebook and cell, and the executed
notebook stays; seeded phases run once per seed; a moved folder resumes. These tests use tiny notebooks written here;
tests/test_run_quick.py runs the real phases.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nbformat
import pytest
from helpers import assert_one_line_error, cli

from workbench.core.errors import WorkbenchError
from workbench.experiment import engine
from workbench.experiment.phases import PHASES, Phase, Step, phase_names

pytest.importorskip("papermill")

PARAMS = (
    'model = "default"\noutput_dir = "."\nseed = 0\nmax_steps = 100\nconfig = "none.yaml"\nfail = False\nlabel = "x"\n'
)
BODY = """import json, pathlib
out = pathlib.Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
seen = {"model": model, "output_dir": output_dir, "seed": seed, "max_steps": max_steps, "config": config,
        "config_text": pathlib.Path(config).read_text() if config != "none.yaml" else None, "label": label}
for extra in ("seeds", "thresholds", "data"):  # injected only into some steps
    if extra in globals():
        seen[extra] = globals()[extra]
(out / f"{label}.json").write_text(json.dumps(seen))
runs = out / f"{label}.count"
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
"""
FAIL = 'if fail:\n    raise ValueError("boom on\\ntwo lines")\n'


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# tiny"),
        params,
        nbformat.v4.new_code_cell(BODY),
        nbformat.v4.new_code_cell(FAIL),
        nbformat.v4.new_code_cell('print("after")'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def phases(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    config = src / "tiny.yaml"
    config.write_text("max_steps: 3\n")
    return {
        "first": Phase(
            (
                Step(_notebook(src / "a.ipynb"), parameters={"label": "a"}),
                Step(_notebook(src / "b.ipynb"), parameters={"label": "b"}),
            )
        ),
        "second": Phase(
            (Step(_notebook(src / "c.ipynb"), parameters={"label": "c"}, quick={"max_steps": 4}, config=config),),
            needs=(("a.json", "first"),),
        ),
    }


def _run(phase, out, phases, **kw):
    lines = []
    doc = engine.run(phase, out, phases=phases, cwd=out.parent, echo=lines.append, **kw)
    return doc, lines


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_parameters_reach_notebooks_as_values_and_run_json(tmp_path, phases):
    out = tmp_path / "run"
    doc, lines = _run("all", out, phases, model='some model\'s "dir"', quick=True, seed=7)
    a, c = _read(out / "a.json"), _read(out / "c.json")
    assert a == {
        "model": 'some model\'s "dir"',
        "output_dir": str(out),
        "seed": 7,
        "max_steps": 100,
        "config": "none.yaml",
        "config_text": None,
        "label": "a",
    }
    assert c["max_steps"] == 4 and c["seed"] == 7  # --quick sizes only where the step defines them
    assert c["config"] == str(out / "configs" / "tiny.yaml") and c["config_text"] == "max_steps: 3\n"
    for name in ("a", "b", "c"):
        executed = nbformat.read(out / f"{name}.ipynb", as_version=4)
        injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
        assert len(injected) == 1
    on_disk = _read(out / "run.json")
    assert on_disk == doc
    assert doc["kind"] == "run" and doc["model"] == 'some model\'s "dir"'
    assert doc["settings"] == {
        "phase": "all",
        "quick": True,
        "force": False,
        "seed": 7,
        "seeds": [7],
        "thresholds": {},
        "kernel": "python3",
        "task": None,
        "task_file": None,
    }
    assert list(doc["phases"]) == ["first", "second"]
    for name, notebooks in (("first", ["a.ipynb", "b.ipynb"]), ("second", ["c.ipynb"])):
        entry = doc["phases"][name]
        assert entry["status"] == "done" and entry["seconds"] > 0 and list(entry["notebooks"]) == notebooks
        marker = _read(out / "phases" / f"{name}.done.json")
        assert marker["seconds"] == entry["seconds"] and marker["parameters"] == entry["parameters"]
    assert doc["phases"]["second"]["parameters"]["c.ipynb"]["max_steps"] == 4
    assert doc["environment"]["libraries"]["torch"]
    assert doc["git_commit"] is None or len(doc["git_commit"]) == 40
    assert any("first: done in" in line for line in lines)


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_done_phase_is_skipped_and_force_reruns(tmp_path, phases):
    out = tmp_path / "run"
    _run("first", out, phases)
    assert (out / "a.count").read_text() == "1"
    doc, lines = _run("first", out, phases)
    assert (out / "a.count").read_text() == "1" and any("done already" in line for line in lines)
    assert doc["phases"]["first"]["status"] == "done"
    _run("first", out, phases, force=True)
    assert (out / "a.count").read_text() == "2" and (out / "b.count").read_text() == "2"


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_changed_parameters_are_an_error_not_a_silent_skip(tmp_path, phases):
    out = tmp_path / "run"
    _run("first", out, phases)
    with pytest.raises(WorkbenchError, match=r"phase first .* other parameters .*seed.*--force"):
        _run("first", out, phases, seed=3)
    assert (out / "a.count").read_text() == "1"


def test_missing_prerequisite_names_the_phase_to_run(tmp_path, phases):
    out = tmp_path / "run"
    with pytest.raises(WorkbenchError, match=r"phase second needs .*a\.json.*workbench run first"):
        _run("second", out, phases)
    assert not (out / "c.count").exists() and not (out / "run.json").exists()


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_failing_cell_is_one_line_keeps_notebook_and_resume_starts_there(tmp_path, phases):
    out = tmp_path / "run"
    failing = dict(phases)
    failing["first"] = Phase(
        (phases["first"].steps[0], Step(phases["first"].steps[1].notebook, parameters={"label": "b", "fail": True}))
    )
    with pytest.raises(WorkbenchError) as exc:
        _run("all", out, failing)
    message = str(exc.value)
    assert "\n" not in message
    assert "b.ipynb" in message and "ValueError" in message and "boom on two lines" in message
    assert "cell" in message and "In [" in message and str(out / "b.ipynb") in message
    executed = nbformat.read(out / "b.ipynb", as_version=4)  # kept, with the error in it
    assert any(o.get("ename") == "ValueError" for cell in executed.cells for o in cell.get("outputs", []))
    doc = _read(out / "run.json")
    assert doc["phases"]["first"]["status"] == "failed" and "b.ipynb" in doc["phases"]["first"]["error"]
    assert "second" not in doc["phases"] and not (out / "phases" / "first.done.json").exists()
    # fixed: the rerun resumes at the first phase not done and finishes the rest
    doc, _ = _run("all", out, phases)
    assert [p["status"] for p in doc["phases"].values()] == ["done", "done"]
    assert (out / "c.count").read_text() == "1"


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_rerunning_a_phase_redoes_the_phases_that_need_it(tmp_path, phases):
    out = tmp_path / "run"
    _run("all", out, phases)
    (out / "phases" / "first.done.json").unlink()  # as if interrupted while redoing `first`
    _run("all", out, phases)
    assert (out / "a.count").read_text() == "2" and (out / "c.count").read_text() == "2"


def test_unknown_phase_and_bad_out(tmp_path, phases):
    with pytest.raises(WorkbenchError, match="unknown phase 'verify': choose one of all, first, second"):
        engine.run("verify", tmp_path / "run", phases=phases)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(WorkbenchError, match="is a file"):
        engine.run("first", afile, phases=phases)
    assert phase_names("all") == ["generate", "baseline", "phase1", "phase2", "verify"]
    assert [s.notebook.name for s in PHASES["baseline"].steps] == ["01_baseline_probing.ipynb", "02_logit_lens.ipynb"]
    assert all(s.notebook.is_file() for p in PHASES.values() for s in p.steps)


@pytest.fixture
def seeded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return {
        "prep": Phase((Step(_notebook(src / "a.ipynb"), parameters={"label": "a"}),)),
        "train": Phase(
            (Step(_notebook(src / "c.ipynb"), parameters={"label": "c"}, paths={"data": "a.json"}),),
            needs=(("a.json", "prep"),),
            seeded=True,
        ),
        "after": Phase(
            (Step(_notebook(src / "e.ipynb"), parameters={"label": "e"}),), needs=(("c.json", "train"),), seeded=True
        ),
        "check": Phase(
            (Step(_notebook(src / "d.ipynb"), parameters={"label": "d"}, seeds_param=True, thresholds_param=True),),
            always=True,
        ),
        "side": Phase(  # runs once over every seed's output, as `run causal` reads each seed's adapters
            (Step(_notebook(src / "f.ipynb"), parameters={"label": "f"}, seeds_param=True),),
            needs=(("c.json", "train"),),
            in_all=False,
        ),
    }


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_seeded_phases_run_once_per_seed_into_seed_folders(tmp_path, seeded):
    out = tmp_path / "run"
    doc, lines = _run("all", out, seeded, seed=7, seeds=2, thresholds={"eight_min_score": 6.0})
    assert _read(out / "a.json")["seed"] == 7 and "data" not in _read(out / "a.json")
    for s in (7, 8):
        c = _read(out / f"seed-{s}" / "c.json")
        assert c["seed"] == s and c["output_dir"] == str(out / f"seed-{s}") and c["data"] == str(out / "a.json")
        assert (out / f"seed-{s}" / "c.ipynb").is_file() and (out / "phases" / f"train.seed-{s}.done.json").is_file()
        assert _read(out / f"seed-{s}" / "e.json")["seed"] == s
    d = _read(out / "d.json")
    assert d["seeds"] == [7, 8] and d["thresholds"] == {"eight_min_score": 6.0} and d["output_dir"] == str(out)
    assert list(doc["phases"]) == ["prep", "train.seed-7", "train.seed-8", "after.seed-7", "after.seed-8", "check"]
    assert doc["settings"]["seeds"] == [7, 8]
    log = (out / "run.log").read_text().splitlines()
    assert len(log) == len(lines) and all(line.endswith(said) for line, said in zip(log, lines))

    _run("all", out, seeded, seed=7, seeds=2, thresholds={"eight_min_score": 6.0})  # done phases skip; `always` reruns
    assert (out / "seed-7" / "c.count").read_text() == "1" and (out / "d.count").read_text() == "2"
    doc, _ = _run("check", out, seeded)  # no seeds given: the folder's own
    assert _read(out / "d.json")["seeds"] == [7, 8] and doc["settings"]["seeds"] == [7, 8]
    doc, _ = _run("train", out, seeded, seed=8, seeds=1, force=True)  # a seed's rerun drops that seed's dependents only
    assert (
        not (out / "phases" / "after.seed-8.done.json").exists()
        and (out / "phases" / "after.seed-7.done.json").exists()
    )
    assert doc["phases"]["after.seed-8"]["status"] == "stale" and doc["phases"]["after.seed-7"]["status"] == "done"
    assert doc["settings"]["seeds"] == [8]
    _run("prep", out, seeded, seed=7, force=True)  # an unseeded rerun drops every seed's dependents
    assert not list((out / "phases").glob("train.seed-*")) and (out / "phases" / "prep.done.json").exists()
    _run("all", out, seeded, seed=7, seeds=2, thresholds={"eight_min_score": 6.0})
    assert (out / "seed-8" / "c.count").read_text() == "3" and (out / "seed-8" / "e.count").read_text() == "2"
    assert (out / "seed-7" / "c.count").read_text() == "2"


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_quick_marks_the_run_until_its_phases_are_redone_in_full(tmp_path, seeded):
    out = tmp_path / "run"
    quick_phases = dict(
        seeded,
        train=Phase(
            (Step(seeded["train"].steps[0].notebook, parameters={"label": "c"}, quick={"max_steps": 4}),),
            needs=seeded["train"].needs,
            seeded=True,
        ),
    )
    doc, _ = _run("all", out, quick_phases, quick=True, seeds=2)
    assert doc["quick"] is True and doc["phases"]["prep"]["quick"] is False  # prep has no quick sizes
    doc, _ = _run("check", out, quick_phases)  # verifying without --quick keeps the quick mark
    assert doc["quick"] is True and doc["phases"]["check"]["quick"] is False
    doc, _ = _run("all", out, quick_phases, force=True, seeds=1, seed=50)  # a full run of other seeds
    assert doc["quick"] is False and doc["phases"]["train.seed-42"]["quick"] is True  # old seed, not counted


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_a_moved_run_folder_resumes_and_a_lost_output_asks_for_force(tmp_path, seeded):
    out = tmp_path / "run"
    _run("all", out, seeded)
    moved = tmp_path / "moved"
    out.rename(moved)
    _, lines = _run("all", moved, seeded)
    assert sum("done already" in line for line in lines) == 3 and (moved / "seed-42" / "c.count").read_text() == "1"
    (moved / "seed-42" / "c.json").unlink()
    with pytest.raises(WorkbenchError, match=r"workbench run train --force --out"):
        _run("after", moved, seeded, force=True)


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_a_side_run_keeps_the_experiments_settings(tmp_path, seeded):
    out = tmp_path / "run"
    side = dict(
        seeded,
        side=Phase(
            (
                Step(
                    seeded["check"].steps[0].notebook,
                    parameters={"label": "s"},
                    seeds_param=True,
                    quick={"max_steps": 1},
                ),
            ),
            in_all=False,
        ),
    )
    doc, _ = _run("all", out, side, seeds=2, model="m1")
    assert "side" not in doc["phases"] and doc["settings"]["seeds"] == [42, 43]  # not part of `all`
    doc, _ = _run("side", out, side, seed=7, seeds=3, quick=True, model="m2")
    assert _read(out / "s.json")["seeds"] == [7, 8, 9]  # its own seeds, --seed respected
    assert doc["model"] == "m1" and doc["settings"]["seeds"] == [42, 43] and doc["quick"] is False
    assert doc["side_runs"]["side"]["model"] == "m2" and doc["side_runs"]["side"]["settings"]["seeds"] == [7, 8, 9]


@pytest.mark.slow  # runs notebooks in Jupyter kernels
def test_seeded_prerequisites_are_per_seed(tmp_path, seeded):
    out = tmp_path / "run"
    _run("all", out, seeded, seeds=1)  # default first training seed: 42
    assert (out / "seed-42" / "c.json").is_file()
    with pytest.raises(WorkbenchError, match=r"phase after needs .*seed-43/c\.json.*workbench run train"):
        _run("after", out, seeded, seed=43)
    with pytest.raises(WorkbenchError, match="--seeds 0: pass 1 or more"):
        _run("all", out, seeded, seeds=0)


def test_a_phase_over_all_seeds_needs_each_seeds_output(tmp_path, seeded):
    """Checked before anything runs: seed 42's c.json is there, seed 43's is not, and the error names that one."""
    out = tmp_path / "run"
    (out / "seed-42").mkdir(parents=True)
    (out / "seed-42" / "c.json").write_text("{}")
    with pytest.raises(WorkbenchError, match=r"phase side needs .*seed-43/c\.json.*`workbench run train --out"):
        _run("side", out, seeded, seeds=2)
    assert not (out / "run.json").exists()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "run", "bogus", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "unknown phase 'bogus'", "baseline", "phase2")
    code, _, err = cli(capsys, "run", "phase2", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "data/train.jsonl", "workbench run generate")
    code, _, err = cli(capsys, "run", "phase1", "--strict", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--strict", "workbench run verify")
    code, _, err = cli(capsys, "run", "verify", "--threshold", "eight=3", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "unknown threshold 'eight'", "eight_min_score")
    code, _, err = cli(capsys, "run", "all", "--seeds", "0", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--seeds 0")
    assert not (tmp_path / "run").exists()
    code, _, err = cli(capsys, "run", "baseline", "--max-steps", "3")
    assert_one_line_error(code, err, "--max-steps")


def test_a_task_reaches_the_notebooks_with_its_steps_and_sizes(tmp_path):
    """`--task`: every notebook gets the task file; the baseline gets the run's data, training its task's steps and
    held-out size, --quick still wins; the guide's arithmetic (no task) gets none of it, as before tasks were data."""
    from workbench.tasks.spec import load_task

    spec = load_task("sentiment")
    train, base = PHASES["phase1"].steps[0], PHASES["baseline"].steps[0]
    seeded, once = engine.Job("phase1", 42), engine.Job("baseline", None)
    p = engine.step_parameters(train, tmp_path, seeded, "default", False, None, [42], None, spec)
    assert p["task"] == spec.path and p["max_steps"] == 200 and p["eval_samples"] == 100
    q = engine.step_parameters(train, tmp_path, seeded, "default", True, None, [42], None, spec)
    assert (q["max_steps"], q["eval_samples"]) == (4, 32)
    b = engine.step_parameters(base, tmp_path, once, "default", False, None, [42], None, spec)
    assert b["train_data"] == str(tmp_path / "data" / "train.jsonl") and "max_steps" not in b
    plain = engine.step_parameters(base, tmp_path, once, "default", False, None, [42])
    assert "task" not in plain and "train_data" not in plain
    assert "task" not in engine.step_parameters(train, tmp_path, seeded, "default", False, None, [42])


def test_rerun_command_gives_back_the_parameters_through_a_shell():
    params = {"arms": {"vo": ["runs/it's here/a"]}, "seeds": [42, 43], "docs_page": "docs/causal.md"}
    command = engine.rerun_command("notebooks/08 x.ipynb", params)
    words = shlex.split(command)
    assert words[:3] == ["papermill", "notebooks/08 x.ipynb", "OUT.ipynb"] and words[3] == "-y"
    assert json.loads(words[4]) == params


def test_side_phases_running_at_once_keep_each_others_entries(tmp_path):
    """`run compare` and `run causal` in one folder at the same time: each save merges into run.json as it is on
    disk, so neither drops the other's phase or side run, and the experiment's settings stay."""
    from workbench.experiment.layout import RunLayout

    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    quiet = lambda line: None
    main = engine.RunRecord(layout, PHASES, quiet)
    main.start("all", "m", {"seeds": [42]}, "abc", side=False)
    main.set("generate", status="done")
    compare, causal = engine.RunRecord(layout, PHASES, quiet), engine.RunRecord(layout, PHASES, quiet)
    compare.start("compare", "m", {"seeds": [42, 43]}, "c1", side=True)
    causal.start("causal", "m", {"seeds": [42]}, "c2", side=True)
    compare.set("compare", status="running")
    causal.set("causal", status="running")
    compare.set("compare", status="done")
    doc = json.loads(layout.run_json.read_text())
    assert {k: p["status"] for k, p in doc["phases"].items()} == {
        "generate": "done",
        "compare": "done",
        "causal": "running",
    }
    assert set(doc["side_runs"]) == {"compare", "causal"} and doc["side_runs"]["compare"]["git_commit"] == "c1"
    assert doc["settings"] == {"seeds": [42]} and doc["git_commit"] == "abc"

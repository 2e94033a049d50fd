"""Faults mid-run: training processes killed with SIGKILL at seeded-random moments — inside a step, while a checkpoint
is being written, right before it is renamed into place, while the log is being written — and resumed with
`--resume` until they finish. Every checkpoint on disk is always complete, the run ends at the requested step, and on
the CPU with a fixed seed the final adapter equals an uninterrupted run's bit for bit. A runner killed mid-phase
resumes with `workbench run` and ends with the same result files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench.training.config import build_config
from workbench.training.loop import train

pytestmark = pytest.mark.slow  # training processes killed and resumed: tens of seconds each
STEPS, SAVE_EVERY = 12, 2
# Runs train() in a child process and SIGKILLs it at one chosen moment (the child kills itself, so the moment is exact).
DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import torch
    from workbench.training import checkpoints, loop
    from workbench.training.config import build_config

    cfg, fault = json.loads(sys.argv[1]), sys.argv[2]
    kind, n = fault.split(":") if fault != "none" else ("none", "0")
    n, calls = int(n), {"step": 0, "save": 0, "rename": 0, "log": 0}

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    def counting(name, real, before=True):
        def wrapper(*a, **k):
            calls[name] += 1
            if kind == name and calls[name] == n and before:
                kill()
            out = real(*a, **k)
            if kind == name and calls[name] == n:
                kill()
            return out
        return wrapper

    torch.optim.AdamW.step = counting("step", torch.optim.AdamW.step)              # in the middle of step n
    checkpoints.torch.save = counting("save", torch.save, before=False)               # optimizer.pt of save n written, no state.json
    real_rename = Path.rename
    Path.rename = lambda self, target: (counting("rename", real_rename)(self, target)
                                        if self.name.startswith(".tmp-step-") else real_rename(self, target))
    if kind == "log":  # a torn line: half of this process's n-th log row reaches the file, then the kill
        real_dumps = loop.json.dumps
        class TornJson:
            def __getattr__(self, name):
                return getattr(json, name)
            @staticmethod
            def dumps(obj, *a, **k):
                text = real_dumps(obj, *a, **k)
                if isinstance(obj, dict) and "grad_norm" in obj:
                    calls["log"] += 1
                if isinstance(obj, dict) and "grad_norm" in obj and calls["log"] == n:
                    log = Path(cfg["output"]) / "train_log.jsonl"
                    with log.open("a") as fh:
                        fh.write(text[: len(text) // 2])
                    kill()
                return text
        loop.json = TornJson()
    loop.train(build_config(cfg), device="cpu", progress=False)
""")


def _cfg(tiny_dir, data_file, out: Path, **kw) -> dict:
    return {
        "model": str(tiny_dir),
        "data": str(data_file),
        "eval_data": str(data_file.with_name("eval.jsonl")),
        "output": str(out),
        "max_steps": STEPS,
        "save_every": SAVE_EVERY,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "seed": 0,
        "intermediate_loss": {"enabled": True},
        **kw,
    }


def _child(cfg: dict, fault: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cfg), fault], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode


def _checkpoints_are_complete(out: Path) -> list[int]:
    """Every checkpoint folder that exists holds all three files, readable; returns their steps."""
    steps = []
    for folder in sorted((out / "checkpoints").glob("step-*")):
        state = json.loads((folder / "state.json").read_text())
        assert load_file(folder / "trainable.safetensors") and torch.load(folder / "optimizer.pt", weights_only=True)
        assert folder.name == f"step-{state['step']:06d}"
        steps.append(state["step"])
    return steps


def _same_adapter(a: Path, b: Path) -> bool:
    x, y = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tiny_dir, data_file, tmp_path, seed=0):
    straight = tmp_path / "straight"
    train(build_config(_cfg(tiny_dir, data_file, straight)), device="cpu", progress=False)
    rng = random.Random(seed)
    # three kills at seeded-random moments, each in a different kind of place, in order of the run's progress
    # the n-th step / checkpoint write / rename / log row of each (resumed) process, n in 1..2, so each one is reached;
    # all four kinds, in a seeded-random order
    faults = [f"{kind}:{rng.randint(1, 2)}" for kind in rng.sample(["step", "save", "rename", "log"], 4)]
    out = tmp_path / "killed"
    cfg = _cfg(tiny_dir, data_file, out)
    kills = 0
    for i, fault in enumerate(faults):
        code = _child({**cfg, "resume": i > 0}, fault)
        kills += code == -signal.SIGKILL
        _checkpoints_are_complete(out)
    assert kills == len(faults), faults  # every fault point was reached and killed the run
    assert _child({**cfg, "resume": True}, "none") == 0
    assert _same_adapter(straight, out), faults
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))
    assert (
        json.loads((out / "metrics.json").read_text())["after"]
        == json.loads((straight / "metrics.json").read_text())["after"]
    )
    assert not list(out.glob(".tmp-*")) and not list((out / "checkpoints").glob(".tmp-*"))


def test_sigkill_at_a_wall_clock_moment(tiny_dir, data_file, tmp_path):
    """A kill from outside at a random time (not a chosen place), repeated until the run gets through."""
    straight = tmp_path / "straight"
    train(build_config(_cfg(tiny_dir, data_file, straight, max_steps=40, save_every=3)), device="cpu", progress=False)
    out = tmp_path / "killed"
    cfg = _cfg(tiny_dir, data_file, out, max_steps=40, save_every=3)
    rng = random.Random(7)
    for attempt in range(2):  # two kills from outside at random times once training runs, then a resume to finish
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps({**cfg, "resume": attempt > 0}), "none"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log, started, deadline = out / "train_log.jsonl", time.time(), time.monotonic() + 120
        # until this process has written its log and a checkpoint exists (a loaded machine trains slowly: without the
        # second condition both kills could land before step 3's checkpoint, and the last run would have none to resume)
        while proc.poll() is None and time.monotonic() < deadline:
            if (
                log.exists()
                and log.stat().st_mtime >= started
                and log.read_text().strip()
                and any((out / "checkpoints").glob("step-*"))
            ):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _checkpoints_are_complete(out)
    assert _checkpoints_are_complete(out), "the kills came after a checkpoint, so the last run resumes"
    finished = _child({**cfg, "resume": True}, "none") == 0
    assert finished and _same_adapter(straight, out)


PARAMS = 'output_dir = "."\nlabel = "x"\nsleep = 0.0\n'
BODY = """import json, pathlib, time
time.sleep(sleep)
out = pathlib.Path(output_dir)
(out / f"{label}.json").write_text(json.dumps({"label": label, "value": sum(i * i for i in range(1000))}))
"""


def test_a_runner_killed_mid_phase_resumes_to_the_same_results(tmp_path):
    import nbformat

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell(PARAMS)
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(BODY)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, src / f"{name}.ipynb")
    script = textwrap.dedent(f'''
        import sys
        from pathlib import Path
        from workbench.experiment.phases import Phase, Step
        from workbench.experiment.engine import run
        phases = {{"first": Phase((Step(Path("{src}/a.ipynb"), parameters={{"label": "a"}}),)),
                   "second": Phase((Step(Path("{src}/b.ipynb"), parameters={{"label": "b", "sleep": float(sys.argv[2])}}),),
                                   needs=(("a.json", "first"),))}}
        run("all", sys.argv[1], phases=phases, cwd="{tmp_path}", echo=lambda line: None)
    ''')
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([sys.executable, "-c", script, str(straight), "0"], check=True, timeout=300)
    proc = subprocess.Popen([sys.executable, "-c", script, str(killed), "4"], start_new_session=True)
    deadline = time.monotonic() + 120
    while not (killed / "b.ipynb").exists() and time.monotonic() < deadline:  # phase "second" has started
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-phase
    proc.wait()
    doc = json.loads((killed / "run.json").read_text())
    assert doc["phases"]["first"]["status"] == "done" and doc["phases"]["second"]["status"] == "running"
    assert not (killed / "b.json").exists() and not (killed / "phases" / "second.done.json").exists()
    # resumed (the parameters must match the killed run's, so the same sleep): only the unfinished phase runs
    first_marker = (killed / "phases" / "first.done.json").read_text()
    subprocess.run([sys.executable, "-c", script, str(killed), "4"], check=True, timeout=300)
    assert (killed / "phases" / "first.done.json").read_text() == first_marker
    for name in ("a.json", "b.json"):
        assert (killed / name).read_text() == (straight / name).read_text()
    assert {p.name for p in (killed / "phases").iterdir()} == {p.name for p in (straight / "phases").iterdir()}
    assert [p["status"] for p in json.loads((killed / "run.json").read_text())["phases"].values()] == ["done", "done"]

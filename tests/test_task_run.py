"""`workbench run all --quick --task sentiment` on the embedded model, with the committed fixture of the VADER data as
the cache (no network): the whole experiment runs on a task where no prompt token names the class, the split is the
task file's (train easy, hold out hard, tweets and Amazon out of distribution) and the report speaks of classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_cli

from workbench.core.cache import cache_root

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    """The run folder and the CLI's result; the cache holds the fixture data and (linked) the converted model."""
    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(FIXTURES / "vader", cache / "tasks" / "vader")
    for model in cache_root().glob("smollm2-*"):  # the model converted once already: not again
        (cache / model.name).symlink_to(model)
    out = tmp_path_factory.mktemp("sentiment") / "run"
    env = {"WORKBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "2"}
    proc = run_cli("run", "all", "--quick", "--task", "sentiment", "--out", out, timeout=1500, env=env)
    return out, proc, env


def test_the_run_uses_the_task_files_split(sentiment_run):
    out, proc, _ = sentiment_run
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["task"] == "sentiment"
    train, heldout, ood = (_jsonl(out / "data" / f"{n}.jsonl") for n in ("train", "heldout", "ood"))
    assert {r["subset"] for r in train} == {"easy"} and {r["subset"] for r in heldout} == {"hard"}
    assert {r["subset"] for r in ood} == {"tweets", "amazon"}
    assert all(r["prompt"].startswith("Review: ") and r["prompt"].endswith("\nSentiment:") for r in train + heldout)
    assert {r["response"] for r in train} == {" positive", " negative"}
    assert sum(r["label"] == "positive" for r in train) == sum(r["label"] == "negative" for r in train)
    generate = json.loads((out / "data" / "generate.json").read_text())
    assert generate["task"]["name"] == "sentiment" and generate["task"]["ood"]["records"] == len(ood)


def test_the_probe_has_its_surface_baseline_and_the_lens_expects_each_prompts_class(sentiment_run):
    out, proc, _ = sentiment_run
    assert proc.returncode == 0, proc.stderr
    probe = json.loads((out / "baseline_classifier.json").read_text())
    assert {len(v) for v in probe["prompts"].values()} == {32}  # probe_per_class from the 64 training records
    assert 0.0 <= probe["bag_of_tokens"]["accuracy"] <= 1.0 and probe["bag_of_tokens"]["distinct_tokens"] > 100
    response = {r["prompt"]: r["response"] for r in _jsonl(out / "data" / "heldout.jsonl")}
    lens = json.loads((out / "baseline_logit_lens.json").read_text())
    assert list(lens["target_token_ids"]) == [" positive", " negative"]
    assert [r["expected"] for r in lens["results"]] == [response[r["prompt"]] for r in lens["results"]]


def test_training_reads_the_class_words_in_and_out_of_distribution(sentiment_run):
    out, proc, _ = sentiment_run
    assert proc.returncode == 0, proc.stderr
    seed = out / "seed-42"
    config = json.loads((seed / "phase1_adapter" / "config.json").read_text())
    assert config["intermediate_loss"]["targets"] == {"positive": " positive", "negative": " negative"}
    ood = json.loads((seed / "phase1_lens_ood.json").read_text())
    assert ood["score"]["total"] == len(_jsonl(out / "data" / "ood.jsonl"))
    for name in ("phase1_answers_base", "phase2_greedy_before", "phase2_greedy_after"):
        rows = json.loads((seed / f"{name}.json").read_text())["rows"]
        assert {r["answer"] for r in rows} <= {" positive", " negative"}
        assert all(r["correct"] == (r["answer"] == r["response"]) for r in rows)


def test_the_report_and_the_cross_task_table_speak_of_the_task(sentiment_run):
    out, proc, env = sentiment_run
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "task: sentiment" in report and "--task sentiment" in report
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert not any("operation" in c["claim"] + c["measured"] for c in claims)
    table = run_cli("table", out, env=env)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("| sentiment"))
    assert row.startswith("| sentiment (quick) | default | L")
    verify = run_cli("run", "verify", "--out", out, env=env)  # a later phase keeps the folder's task
    assert verify.returncode == 0, verify.stderr
    assert json.loads((out / "run.json").read_text())["settings"]["task"] == "sentiment"

"""`workbench run all --quick --task sentiment` (the session's ``tiny_run``, on a tiny Llama whose tokenizer has the
class words, with the committed fixture of the VADER data as the cache): the whole experiment runs on a task where no
prompt token names the class, the split is the task file's (train easy, hold out hard, tweets and Amazon out of
distribution) and the report speaks of classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import cli
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from transformers import AutoTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def run(tiny_run):
    out, code, _, err, env = tiny_run
    assert code == 0, err
    return out, env


def test_the_run_uses_the_task_files_split(run):
    out, _ = run
    doc = json.loads((out / "run.json").read_text())
    assert doc["settings"]["task"] == "sentiment"
    train, heldout, ood = (_jsonl(out / "data" / f"{n}.jsonl") for n in ("train", "heldout", "ood"))
    assert {r["subset"] for r in train} == {"easy"} and {r["subset"] for r in heldout} == {"hard"}
    assert {r["subset"] for r in ood} == {"tweets", "amazon"}
    assert all(r["prompt"].startswith("Review: ") and r["prompt"].endswith("\nSentiment:") for r in train + heldout)
    assert {r["response"] for r in train} == {" positive", " negative"}
    assert sum(r["label"] == "positive" for r in train) == sum(r["label"] == "negative" for r in train)
    generate = json.loads((out / "data" / "generate.json").read_text())
    assert generate["task"]["name"] == "sentiment" and generate["task"]["ood"]["records"] == len(ood)


def test_the_surface_baseline_is_scikit_learns_on_the_prompts_tokens(run):
    """The probe's bag-of-tokens accuracy, recomputed here from the prompts it saved: scikit-learn's CountVectorizer
    over the model's own tokens, the probe's folds (k = min(5, smallest class), shuffled with its seed)."""
    out, _ = run
    probe = json.loads((out / "baseline_classifier.json").read_text())
    assert {len(v) for v in probe["prompts"].values()} == {32}  # probe_per_class from the 64 training records
    tokenizer = AutoTokenizer.from_pretrained(out.parent / "llama-22")
    prompts = [p for ps in probe["prompts"].values() for p in ps]
    labels = [c for c, ps in probe["prompts"].items() for _ in ps]
    counts = CountVectorizer(analyzer=lambda text: [str(t) for t in tokenizer(text).input_ids]).fit_transform(prompts)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=probe["seed"])
    scores = cross_val_score(LogisticRegression(max_iter=2000), counts, np.asarray(labels), cv=folds)
    assert probe["bag_of_tokens"]["accuracy"] == pytest.approx(scores.mean(), abs=1e-9)
    assert probe["bag_of_tokens"]["distinct_tokens"] == counts.shape[1]


def test_the_lens_expects_each_prompts_class(run):
    out, _ = run
    response = {r["prompt"]: r["response"] for r in _jsonl(out / "data" / "heldout.jsonl")}
    lens = json.loads((out / "baseline_logit_lens.json").read_text())
    assert list(lens["target_token_ids"]) == [" positive", " negative"]
    assert [r["expected"] for r in lens["results"]] == [response[r["prompt"]] for r in lens["results"]]


def test_training_reads_the_class_words_in_and_out_of_distribution(run):
    out, _ = run
    seed = out / "seed-42"
    config = json.loads((seed / "phase1_adapter" / "config.json").read_text())
    assert config["intermediate_loss"]["targets"] == {"positive": " positive", "negative": " negative"}
    ood = json.loads((seed / "phase1_lens_ood.json").read_text())
    assert ood["score"]["total"] == len(_jsonl(out / "data" / "ood.jsonl"))
    for name in ("phase1_answers_base", "phase2_greedy_before", "phase2_greedy_after"):
        rows = json.loads((seed / f"{name}.json").read_text())["rows"]
        assert {r["answer"] for r in rows} <= {" positive", " negative"}
        assert all(r["correct"] == (r["answer"] == r["response"]) for r in rows)


def test_the_report_and_the_cross_task_table_speak_of_the_task(run, capsys, monkeypatch):
    out, env = run
    report = (out / "report.md").read_text()
    assert "task: sentiment" in report and "--task sentiment" in report
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert not any("operation" in c["claim"] + c["measured"] for c in claims)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, stdout, err = cli(capsys, "table", out)
    assert code == 0, err
    row = next(line for line in stdout.splitlines() if line.startswith("| sentiment"))
    assert row.startswith(f"| sentiment (quick) | {out.parent / 'llama-22'} | L") and "| L12: " in row

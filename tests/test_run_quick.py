"""`workbench run all --quick --seeds 2` on the embedded model (the session's `quick_run`): every phase runs its
notebook into one folder, the seeded phases once per seed, verification writes claims.json and report.md from those
files, `--strict` and `--threshold` decide the exit status, a rerun skips what is done, and a quick run is never
published.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from helpers import closing_markdown, run_cli

from workbench.core.guide import THRESHOLDS
from workbench.experiment import report
from workbench.ui import plots

pytestmark = [pytest.mark.integration, pytest.mark.notebook]
SEEDS = (42, 43)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _cli(*args):
    proc = run_cli(*args)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def run(quick_run):
    out, code, stdout, err = quick_run
    assert code == 0, err
    return out, stdout


def test_every_phase_ran_into_one_folder(run):
    out, stdout = run
    doc = _read(out / "run.json")
    keys = [
        "generate",
        "baseline",
        *(f"phase1.seed-{s}" for s in SEEDS),
        *(f"phase2.seed-{s}" for s in SEEDS),
        "verify",
    ]
    assert list(doc["phases"]) == keys and all(p["status"] == "done" for p in doc["phases"].values())
    assert doc["settings"]["seeds"] == list(SEEDS) and doc["settings"]["quick"] is True and doc["quick"] is True
    assert all(p["git_commit"] == doc["git_commit"] for p in doc["phases"].values())
    for key in keys:
        assert (out / "phases" / f"{key}.done.json").is_file(), key
    log = (out / "run.log").read_text()
    assert all(f"phase {key}: done in" in log for key in keys)
    assert "claims: " in stdout and "report.md" in stdout
    for name in (
        "00_generate_data.ipynb",
        "01_baseline_probing.ipynb",
        "02_logit_lens.ipynb",
        "05_verification.ipynb",
        *(f"seed-{s}/{nb}" for s in SEEDS for nb in ("03_dual_reward_training.ipynb", "04_routing_training.ipynb")),
        "configs/phase1.yaml",
        "configs/phase2.yaml",
    ):
        assert (out / name).is_file(), name


def test_generate_notebook_writes_the_shared_data(run):
    out, _ = run
    train = (out / "data" / "train.jsonl").read_text().splitlines()
    heldout = [json.loads(line) for line in (out / "data" / "heldout.jsonl").read_text().splitlines()]
    assert len(train) == 64 and len(heldout) == 32
    assert json.loads(train[0]) == {
        "prompt": "2 * 48 = ",
        "response": "96",
        "operation": "multiply",
        "classification_target": "multiply",
    }
    assert not {json.loads(line)["prompt"] for line in train} & {r["prompt"] for r in heldout}
    g = _read(out / "data" / "generate.json")
    assert g["heldout_in_train"] == 0 and g["last_prompt_tokens"] == {" ": 64}
    assert all(n == 0 for c in g["violations"].values() for n in c.values())
    assert "Every record follows the generator's rules" in closing_markdown(
        nbformat.read(out / "00_generate_data.ipynb", 4)
    )
    for s in SEEDS:  # every seed trained on, and was measured on, these files
        m = _read(out / f"seed-{s}" / "phase1_adapter" / "metrics.json")
        assert m["config"]["data"] == str(out / "data" / "train.jsonl") and m["config"]["seed"] == s
        assert m["eval_prompts"] == 32 and m["steps"] == 4
        m2 = _read(out / f"seed-{s}" / "phase2_adapter" / "metrics.json")
        assert m2["config"]["eval_data"] == str(out / "data" / "heldout.jsonl")
        assert m2["config"]["adapter"] == str(out / f"seed-{s}" / "phase1_adapter")


def test_seeds_train_differently(run):
    out, _ = run
    logs = [(out / f"seed-{s}" / "phase1_adapter" / "train_log.jsonl").read_text() for s in SEEDS]
    losses = [[json.loads(line)["loss"] for line in log.splitlines()] for log in logs]
    assert losses[0] != losses[1]


def test_verification_judges_the_run(run):
    out, _ = run
    doc = _read(out / "claims.json")
    claims = {c["id"]: c for c in doc["claims"]}
    assert list(claims) == [
        "base_probe_all_layers",
        "base_probe_classifier_layer",
        "base_lens",
        "phase1_lens",
        "phase1_eight",
        "phase1_probe",
        "phase2_unchanged",
        "phase2_answers",
        "answers",
    ]
    assert doc["seeds"] == list(SEEDS) and doc["thresholds"] == THRESHOLDS
    # what verification reports equals what the phases wrote
    for i, s in enumerate(SEEDS):
        m = _read(out / f"seed-{s}" / "phase1_adapter" / "metrics.json")
        assert claims["phase1_lens"]["values"][i] == m["after"]["lens"]["mean_correct_target_prob"]
        check = _read(out / f"seed-{s}" / "phase2_classifier_check.json")
        assert claims["phase2_unchanged"]["per_seed"][str(s)] is (check["max_abs_diff"] <= 1e-5)
    assert claims["phase2_unchanged"]["verdict"] == "holds"  # frozen layers stay frozen even after 4 steps
    assert claims["base_lens"]["verdict"] == "holds" and claims["base_probe_classifier_layer"]["verdict"] == "holds"
    assert claims["phase1_lens"]["verdict"] == "fails"  # 4 steps do not make a classifier
    assert "[" in claims["phase1_lens"]["measured"] and "holds for 0/2 seeds" in claims["phase1_lens"]["measured"]
    text = (out / "report.md").read_text()
    assert report.claims_table(doc["claims"]) in text and "--quick" in text
    found = closing_markdown(nbformat.read(out / "05_verification.ipynb", 4))
    assert "Verification" in found and "2 training seeds" in found
    figures = [
        "verification_lens",
        "verification_probe",
        "verification_answers",
        "baseline_classifier",
        "seed-42/phase1_losses",
        "seed-43/phase2_adapter_changes",
    ]
    for name in figures:
        assert (out / f"{name}.html").is_file(), name
        assert (out / f"{name}.png").is_file() == bool(plots.chromium()), name
    if plots.chromium():
        assert "![Answers on held-out prompts](verification_answers.png)" in text
        assert (out / "verification_lens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the quick run folder, for tests that change it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    return out


def test_strict_and_thresholds_decide_the_exit_status(copy):
    out = copy
    code, stdout, err = _cli("run", "verify", "--out", out, "--strict")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "phase1_lens fails" in lines[0] and "Traceback" not in err
    loose = ["probe_accuracy=0.6", "trained_lens_min_prob=0", "eight_min_score=0", "min_answer_gain=-1"]
    code, stdout, err = _cli("run", "verify", "--out", out, "--strict", *(x for t in loose for x in ("--threshold", t)))
    assert code == 0, err
    doc = _read(out / "claims.json")
    assert doc["failed"] == [] and doc["thresholds"]["trained_lens_min_prob"] == 0.0
    assert "claims: 9 of 9 hold or are reported" in stdout
    given = {name: float(value) for name, value in (t.split("=") for t in loose)}
    assert doc["thresholds"] == {**THRESHOLDS, **given}  # the ones not given stay the defaults
    # verifying without --quick does not make the quick phases' numbers full ones
    assert _read(out / "run.json")["quick"] is True and _read(out / "claims.json")["run"]["quick"] is True
    assert "This is a `--quick` run" in (out / "report.md").read_text()


def test_rerun_skips_done_phases_and_publish_refuses_a_quick_run(copy, tmp_path):
    out = copy
    before = {p: (out / "phases" / f"{p}.done.json").read_text() for p in ("generate", "phase1.seed-42")}
    code, stdout, err = _cli("run", "all", "--quick", "--out", out)  # the folder's own two seeds
    assert code == 0, err
    assert stdout.count("done already") == 6 and "phase verify: done in" in stdout
    assert all((out / "phases" / f"{p}.done.json").read_text() == text for p, text in before.items())
    readme = tmp_path / "README.md"
    readme.write_text("<!-- claims:start -->\n<!-- claims:end -->\n")
    code, _, err = _cli("publish", out, "--docs", tmp_path / "docs" / "results.md", "--readme", readme)
    assert code == 2 and "--quick run" in err and not (tmp_path / "docs").exists()


def test_compare_quick_writes_both_tables(copy, tmp_path):
    """`workbench run compare --quick` into the run folder: every method trained 2 steps on the embedded model, on the
    run's own data/, and measured alike; without data/ it says which phase makes it."""
    code, _, err = _cli("run", "compare", "--quick", "--out", tmp_path / "fresh")
    assert code == 2 and "needs" in err and "`workbench run generate" in err and len(err.strip().splitlines()) == 1
    out = copy
    code, stdout, err = _cli("run", "compare", "--quick", "--seeds", "1", "--out", out)  # the run has two
    assert code == 0, err
    doc = _read(out / "comparisons.json")
    assert [r["method"] for r in doc["rows"]] == ["none", "lora_standard", "sft_answers", "grpo", "dual_vo", "dual_qk"]
    assert doc["seeds"] == [42] and doc["steps"] == 2 and doc["eval_samples"] == 8
    assert all(r["heldout_prompts"] == 8 and r["eight_total"] == 8 and r["layer"] == 16 for r in doc["rows"])
    assert (out / "compare" / "grpo" / "seed-42" / "adapter" / "grpo_log.jsonl").is_file()
    text = (out / "comparisons.md").read_text()
    assert doc["tables"]["methods"] in text and doc["tables"]["targets"] in text and "Dual-reward V/O" in text
    assert "**V/O vs Q/K.** With the same 2 dual-reward steps" in text
    assert (out / "comparisons_methods.html").is_file() and _read(out / "run.json")["phases"]["compare"][
        "status"
    ] == "done"
    heldout = (out / "data" / "heldout.jsonl").read_text().splitlines()[:8]  # the run's first 8 held-out prompts
    assert (out / "compare" / "heldout.jsonl").read_text().splitlines() == heldout
    assert _read(out / "run.json")["settings"]["phase"] == "all"  # the experiment's settings stay as they were


def test_executed_notebooks_become_html_pages_with_their_figures(run, tmp_path):
    """What `workbench publish` writes into docs/notebooks/: one page per executed notebook (the first seed's 03 and
    04), each plotly figure drawn by the plotly.js beside it, nothing fetched from elsewhere."""
    from workbench.experiment.layout import RunLayout
    from workbench.experiment.publish import publish_notebooks

    out, _ = run
    written = publish_notebooks(RunLayout(out), tmp_path / "notebooks")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "plotly.min.js",
            "00_generate_data.html",
            "01_baseline_probing.html",
            "02_logit_lens.html",
            "03_dual_reward_training.html",
            "04_routing_training.html",
            "05_verification.html",
        ]
    )
    page = (tmp_path / "notebooks" / "03_dual_reward_training.html").read_text(encoding="utf-8")
    figures = sum(
        "application/vnd.plotly.v1+json" in o.get("data", {})
        for c in nbformat.read(out / "seed-42" / "03_dual_reward_training.ipynb", 4).cells
        for o in c.get("outputs", [])
    )
    assert figures == 5 and page.count("Plotly.newPlot(") == figures and page.count('src="plotly.min.js"') == 1
    assert not re.findall(r'<script[^>]*src="https?://', page)
    assert "Dual-reward training." in page  # the closing findings, rendered

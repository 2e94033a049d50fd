"""Notebook 08 end to end on the tiny random Llama with a random LoRA in every arm (given by hand, no run folder): it
writes the summary the verification reads, its closing finding is exactly what ``causal.findings`` builds from that
summary, and it writes no docs page (`workbench publish` does)."""

from __future__ import annotations

import json

import papermill as pm
import pytest

from workbench.core.results import read_result
from workbench.experiment import causal
from workbench.experiment.phases import NOTEBOOKS

pytestmark = [pytest.mark.notebook, pytest.mark.slow]  # a Jupyter kernel, five arms measured


def test_notebook_08_measures_every_arm_and_reports_from_the_summary(tiny_dir, adapter, tmp_path):
    arms = {arm: [str(adapter)] for arm in ("vo", "qk", "routing", "control", "noclip")}
    params = dict(model=str(tiny_dir), output_dir=str(tmp_path / "out"), arms=arms, seeds=[1], n_pairs=6,
                  n_prompts=12, head_layers="1-2")  # fmt: skip
    executed = tmp_path / "08.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "08_is_the_classifier_used.ipynb"), str(executed), parameters=params,
                        kernel_name="python3", progress_bar=False)  # fmt: skip
    doc = read_result(tmp_path / "out" / "causal_summary.json")
    assert set(doc["summary"]) >= {"base", "vo", "qk", "routing", "control", "noclip", "routing_minus_control"}
    assert {row["id"] for row in doc["claims"]} == {"mechanism_vo", "routing_uses_classifier", "phase1_as_written"}
    # the same adapter in both arms: routing minus control is exactly 0, so the routing claim cannot hold
    assert doc["summary"]["routing_minus_control"]["mean"] == 0.0
    assert next(r for r in doc["claims"] if r["id"] == "routing_uses_classifier")["verdict"] == "fails"
    measured = sorted(p.name for p in (tmp_path / "out" / "measurements").iterdir())
    assert measured == sorted([f"{arm}-seed-1.json" for arm in arms] + ["base.json"])
    cells = json.loads(executed.read_text())["cells"]
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in cells[-1].get("outputs", []))
    assert shown == causal.findings(doc["summary"], doc["claims"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["08.ipynb", "out"]  # nothing written elsewhere

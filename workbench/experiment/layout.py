"""Every file of a run folder, named once. Notebooks, the runner, the claims, the report and the widgets ask a layout
for a path instead of typing its name.

``RunLayout(root)`` is the run folder: the shared data, the baseline, the verification and the comparison at its root,
and one ``PhaseFiles`` per training seed in ``seed-<s>/`` (phase 1 and phase 2 of that seed). A folder where notebooks
03 and 04 ran by hand, without seed folders, is one ``PhaseFiles`` itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.results import read_result

SEED_DIR = re.compile(r"^seed-(\d+)$")


class At:
    """A file of a layout: ``layout.name`` is its path inside the layout's root, ``Layout.name.rel`` the relative name."""

    def __init__(self, rel: str):
        self.rel = rel

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else obj.root / self.rel


class _Files:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.root == self.root

    def __hash__(self) -> int:
        return hash((type(self), self.root))


def pattern(*files: At, prefix: str = "") -> str:
    """One glob naming several files: (phase1_adapter/metrics.json, phase2_adapter/metrics.json) ->
    "phase*_adapter/metrics.json"."""
    rels = [f.rel for f in files]
    head = os.path.commonprefix(rels)
    tail = os.path.commonprefix([r[len(head) :][::-1] for r in rels])[::-1]
    return prefix + (rels[0] if len(rels) == 1 else f"{head}*{tail}")


def adapter(folder: str) -> tuple[At, At, At, At]:
    """A training output folder and what `train` writes into it: metrics.json, config.json, train_log.jsonl."""
    return At(folder), At(f"{folder}/metrics.json"), At(f"{folder}/config.json"), At(f"{folder}/train_log.jsonl")


def html(*stems: str) -> tuple[At, ...]:
    """Figures, as the HTML files ``plots.write_figure`` writes (the PNG, when made, sits beside each)."""
    return tuple(At(f"{stem}.html") for stem in stems)


class PhaseFiles(_Files):
    """Phase 1 (dual reward, notebook 03) and phase 2 (routing, notebook 04) of one training seed."""

    phase1_adapter, phase1_metrics, phase1_config, phase1_log = adapter("phase1_adapter")
    phase1_summary, phase1_classifier = At("phase1_summary.json"), At("phase1_classifier.json")
    phase1_lens_eight_before, phase1_lens_eight = At("phase1_lens_eight_before.json"), At("phase1_lens_eight.json")
    phase1_lens_ood_before, phase1_lens_ood = At("phase1_lens_ood_before.json"), At("phase1_lens_ood.json")
    phase1_answers_base = At("phase1_answers_base.json")  # the base model's answers to the held-out prompts
    phase1_train, phase1_heldout = At("phase1_train.jsonl"), At("phase1_heldout.jsonl")  # data made without data/
    (
        phase1_losses_figure,
        phase1_by_operation_figure,
        phase1_eight_layer_figure,
        phase1_eight_heatmap_figure,
        phase1_classifier_figure,
    ) = html(
        "phase1_losses",
        "phase1_lens_by_operation",
        "phase1_lens_eight_layer",
        "phase1_lens_eight_heatmap",
        "phase1_classifier",
    )

    phase2_adapter, phase2_metrics, phase2_config, phase2_log = adapter("phase2_adapter")
    phase2_summary, phase2_check = At("phase2_summary.json"), At("phase2_classifier_check.json")
    phase2_lens_before, phase2_lens_after = At("phase2_lens_before.json"), At("phase2_lens_after.json")
    phase2_greedy_before, phase2_greedy_after = At("phase2_greedy_before.json"), At("phase2_greedy_after.json")
    phase2_train, phase2_heldout = At("phase2_train.jsonl"), At("phase2_heldout.jsonl")
    phase2_losses_figure, phase2_changes_figure, phase2_by_operation_figure = html(
        "phase2_losses", "phase2_adapter_changes", "phase2_lens_by_operation"
    )

    def arm_adapter(self, arm: str) -> Path:
        """A control arm of the causal experiment (``qk``, ``noclip``, ``control``; experiment/arms.py)."""
        return self.root / "causal" / f"{arm}_adapter"

    def data(self, phase: int) -> tuple[Path, Path]:
        """Where a training notebook run without the run's data/ writes the data it generates."""
        return (self.phase1_train, self.phase1_heldout) if phase == 1 else (self.phase2_train, self.phase2_heldout)


class RunLayout(_Files):
    """A run folder (see the module doc)."""

    data_dir, train_data, heldout_data = At("data"), At("data/train.jsonl"), At("data/heldout.jsonl")
    ood_data = At("data/ood.jsonl")  # out-of-distribution records, for a task that has them
    generate = At("data/generate.json")
    baseline_classifier, baseline_lens = At("baseline_classifier.json"), At("baseline_logit_lens.json")
    baseline_lens_eight = At("baseline_logit_lens_eight.json")
    (
        baseline_classifier_figure,
        baseline_lens_figure,
        baseline_heatmap_figure,
        baseline_heatmap_log10_figure,
        baseline_eight_heatmap_figure,
    ) = html(
        "baseline_classifier",
        "baseline_logit_lens_layer",
        "baseline_logit_lens_heatmap",
        "baseline_logit_lens_heatmap_log10",
        "baseline_logit_lens_eight_heatmap_log10",
    )
    claims, report = At("claims.json"), At("report.md")
    causal_summary = At("causal_summary.json")  # notebook 08 (`workbench run causal`): is the classifier used?
    causal_dir = At("causal")  # its per-adapter measurements and figures
    route_dir, route_compare = At("route"), At("route/route_compare.json")  # notebook 09 (`workbench run route`)
    readouts_dir = At("readouts")  # notebook 10 (`workbench run readouts`): one ladder per model
    readouts_summary = At("readouts_summary.json")  # what the verification judges of them
    verification_lens_figure, verification_probe_figure, verification_answers_figure = html(
        "verification_lens", "verification_probe", "verification_answers"
    )
    compare_dir, comparisons, comparisons_md = At("compare"), At("comparisons.json"), At("comparisons.md")
    comparisons_methods_figure, comparisons_eight_figure = html("comparisons_methods", "comparisons_eight")
    run_json, run_log, configs, markers = At("run.json"), At("run.log"), At("configs"), At("phases")

    def read_run(self) -> dict:
        """run.json ({} when the folder has none)."""
        return read_result(self.run_json) if self.run_json.is_file() else {}

    def read_claims(self) -> dict | None:
        """claims.json (None before verification)."""
        return read_result(self.claims) if self.claims.is_file() else None

    def marker(self, key: str) -> Path:
        """The marker of a finished phase (``phase1.seed-42``)."""
        return self.markers / f"{key}.done.json"

    def seed(self, seed: int | None) -> PhaseFiles:
        """The phase files of one training seed (None: a folder without seed folders)."""
        return PhaseFiles(self.root if seed is None else self.root / f"seed-{seed}")

    def seeds(self, seeds: list[int] | None = None) -> dict[int | None, PhaseFiles]:
        """The phase files of ``seeds`` (default: every ``seed-<s>/`` folder there is), or the run folder itself (key
        None) when it has no seed folder, as when notebooks 03 and 04 ran by hand into one folder."""
        found = sorted(
            int(m.group(1)) for p in self.root.glob("seed-*") if p.is_dir() and (m := SEED_DIR.match(p.name))
        )
        if seeds is not None and (found or not PhaseFiles(self.root).phase1_adapter.is_dir()):
            return {int(s): self.seed(int(s)) for s in seeds}
        return {s: self.seed(s) for s in found} or {None: PhaseFiles(self.root)}

    def executed_notebooks(self) -> list[Path]:
        """The notebooks `workbench run` executed into this folder, in order: the run's own, then the first training
        seed's (phases 1 and 2)."""
        first = next(iter(self.seeds()))
        seeded = sorted(self.seed(first).root.glob("*.ipynb")) if first is not None else []
        return sorted([*self.root.glob("*.ipynb"), *seeded], key=lambda p: p.name)

    def report_figures(self, seed: int | None) -> list[tuple[str, Path]]:
        """The figures report.md shows, in order (the seeded ones from ``seed``'s folder)."""
        phases = self.seed(seed)
        of = "" if seed is None else f" (seed {seed})"
        return [
            ("Linear probe accuracy by layer, base model", self.baseline_classifier_figure),
            ("Logit lens, base model, every layer (log10 p)", self.baseline_heatmap_log10_figure),
            ("Logit lens at the classifier layer on held-out prompts", self.verification_lens_figure),
            ("Probe accuracy by layer, before and after phase 1", self.verification_probe_figure),
            (f"Phase 1 losses{of}", phases.phase1_losses_figure),
            ("The guide's eight prompts after phase 1, every layer", phases.phase1_eight_heatmap_figure),
            ("LoRA weight change per layer in phase 2 (grey: frozen)", phases.phase2_changes_figure),
            ("Answers on held-out prompts", self.verification_answers_figure),
        ]

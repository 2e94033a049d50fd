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
    tail = os.path.commonprefix([r[len(head):][::-1] for r in rels])[::-1]
    return prefix + (rels[0] if len(rels) == 1 else f"{head}*{tail}")


class PhaseFiles(_Files):
    """Phase 1 (dual reward, notebook 03) and phase 2 (routing, notebook 04) of one training seed."""

    phase1_adapter = At("phase1_adapter")
    phase1_metrics = At("phase1_adapter/metrics.json")
    phase1_config = At("phase1_adapter/config.json")
    phase1_log = At("phase1_adapter/train_log.jsonl")
    phase1_summary = At("phase1_summary.json")
    phase1_lens_eight_before = At("phase1_lens_eight_before.json")
    phase1_lens_eight = At("phase1_lens_eight.json")
    phase1_classifier = At("phase1_classifier.json")
    phase1_train = At("phase1_train.jsonl")  # data made here when the notebook runs without the run's data/
    phase1_heldout = At("phase1_heldout.jsonl")
    phase1_losses_figure = At("phase1_losses.html")
    phase1_by_operation_figure = At("phase1_lens_by_operation.html")
    phase1_eight_layer_figure = At("phase1_lens_eight_layer.html")
    phase1_eight_heatmap_figure = At("phase1_lens_eight_heatmap.html")
    phase1_classifier_figure = At("phase1_classifier.html")

    phase2_adapter = At("phase2_adapter")
    phase2_metrics = At("phase2_adapter/metrics.json")
    phase2_config = At("phase2_adapter/config.json")
    phase2_log = At("phase2_adapter/train_log.jsonl")
    phase2_summary = At("phase2_summary.json")
    phase2_lens_before = At("phase2_lens_before.json")
    phase2_lens_after = At("phase2_lens_after.json")
    phase2_greedy_before = At("phase2_greedy_before.json")
    phase2_greedy_after = At("phase2_greedy_after.json")
    phase2_check = At("phase2_classifier_check.json")
    phase2_train = At("phase2_train.jsonl")
    phase2_heldout = At("phase2_heldout.jsonl")
    phase2_losses_figure = At("phase2_losses.html")
    phase2_changes_figure = At("phase2_adapter_changes.html")
    phase2_by_operation_figure = At("phase2_lens_by_operation.html")

    def data(self, phase: int) -> tuple[Path, Path]:
        """Where a training notebook run without the run's data/ writes the data it generates."""
        return (self.phase1_train, self.phase1_heldout) if phase == 1 else (self.phase2_train, self.phase2_heldout)


class RunLayout(_Files):
    """A run folder (see the module doc)."""

    data_dir = At("data")
    train_data = At("data/train.jsonl")
    heldout_data = At("data/heldout.jsonl")
    generate = At("data/generate.json")

    baseline_classifier = At("baseline_classifier.json")
    baseline_classifier_figure = At("baseline_classifier.html")
    baseline_lens = At("baseline_logit_lens.json")
    baseline_lens_eight = At("baseline_logit_lens_eight.json")
    baseline_lens_figure = At("baseline_logit_lens_layer.html")
    baseline_heatmap_figure = At("baseline_logit_lens_heatmap.html")
    baseline_heatmap_log10_figure = At("baseline_logit_lens_heatmap_log10.html")
    baseline_eight_heatmap_figure = At("baseline_logit_lens_eight_heatmap_log10.html")

    claims = At("claims.json")
    report = At("report.md")
    verification_lens_figure = At("verification_lens.html")
    verification_probe_figure = At("verification_probe.html")
    verification_answers_figure = At("verification_answers.html")

    compare_dir = At("compare")
    comparisons = At("comparisons.json")
    comparisons_md = At("comparisons.md")
    comparisons_methods_figure = At("comparisons_methods.html")
    comparisons_eight_figure = At("comparisons_eight.html")

    run_json = At("run.json")
    run_log = At("run.log")
    configs = At("configs")
    markers = At("phases")

    def marker(self, key: str) -> Path:
        """The marker of a finished phase (``phase1.seed-42``)."""
        return self.markers / f"{key}.done.json"

    def seed(self, seed: int | None) -> PhaseFiles:
        """The phase files of one training seed (None: a folder without seed folders)."""
        return PhaseFiles(self.root if seed is None else self.root / f"seed-{seed}")

    def seeds(self, seeds: list[int] | None = None) -> dict[int | None, PhaseFiles]:
        """The phase files of ``seeds`` (default: every ``seed-<s>/`` folder there is), or the run folder itself (key
        None) when it has no seed folder, as when notebooks 03 and 04 ran by hand into one folder."""
        found = sorted(int(m.group(1)) for p in self.root.glob("seed-*") if p.is_dir() and (m := SEED_DIR.match(p.name)))
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

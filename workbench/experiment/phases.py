"""The experiment's phases: which notebooks each runs, with which parameters, configs and prerequisites.

``generate`` (the task's data, ``data/``), ``baseline`` (probe and lens of the base model), ``phase1`` (dual-reward
training) and ``phase2`` (routing training), both once per training seed into ``seed-<s>/``, and ``verify`` (the
claims: ``claims.json`` and ``report.md``). Three run only when named: ``compare`` (the guide's comparison tables),
``causal`` (is the classifier used? the control arms trained per seed, then the patching and ablation measurements,
into ``causal/`` and ``causal_summary.json``) and ``route`` (virtual experts: routers deciding at the classifier layer,
into ``route/``) and ``readouts`` (the readout ladder and steerable × decodable for the base model and each seed's
phase-1 adapter, into ``readouts/`` and ``readouts_summary.json``). The engine (``engine.run``) knows nothing of these
phases beyond this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import WorkbenchError
from .layout import PhaseFiles, RunLayout

ROOT = Path(__file__).resolve().parents[2]  # the checkout: notebooks/ and configs/ live there
NOTEBOOKS = ROOT / "notebooks"
CONFIGS = ROOT / "configs"
ALL = "all"
QUICK_DATA = {"train_samples": 64, "eval_samples": 32}
QUICK_TRAINING = {"max_steps": 4, **QUICK_DATA}
QUICK_COMPARE = {"steps": 2, "train_samples": 32, "eval_samples": 8}
QUICK_CAUSAL = {"n_pairs": 8, "n_prompts": 16}
QUICK_ROUTE = {"per_kind": 4, "max_new_tokens": 2}
QUICK_READOUTS = {
    "n_eval": 8,
    "n_fit": 8,
    "corpus_tokens": 64,
    "tuned_steps": 2,
    "jacobian_prompts": 1,
    "n_controls": 1,
}
DEFAULT_SEED = 42  # the training notebooks' (and the guide's generator's) default
DATA = {"train_data": RunLayout.train_data.rel, "heldout_data": RunLayout.heldout_data.rel}
NEEDS_DATA = ((DATA["train_data"], "generate"), (DATA["heldout_data"], "generate"))
TRAINED = (  # each seed's adapters (what `run causal` and `run route` read)
    (f"{PhaseFiles.phase1_adapter.rel}/adapter_config.json", "phase1"),
    (f"{PhaseFiles.phase2_adapter.rel}/adapter_config.json", "phase2"),
)


@dataclass(frozen=True)
class Step:
    """One notebook of a phase. ``config``: a YAML file copied into ``<run>/configs/`` and passed as ``config``;
    ``paths``: parameters that name files inside the run folder (passed as absolute paths); ``seeds_param``: pass the
    run's training seeds as ``seeds``; ``thresholds_param``: pass the claim thresholds as ``thresholds``. With a task
    (`--task`), every notebook gets ``task`` and, where given, ``task_paths`` and the task's steps (``steps_key``)."""

    notebook: Path
    parameters: Mapping = field(default_factory=dict)
    quick: Mapping = field(default_factory=dict)
    config: Path | None = None
    paths: Mapping = field(default_factory=dict)
    seeds_param: bool = False
    thresholds_param: bool = False
    task_paths: Mapping = field(default_factory=dict)  # like ``paths``, passed only when a task is given
    steps_key: str | None = None  # "phase1" | "phase2": with a task, its ``steps`` set max_steps
    task_sizes: bool = False  # with a task, its ``steps.eval_samples`` sets eval_samples


@dataclass(frozen=True)
class Phase:
    """Notebooks run in order. ``needs``: (path, the phase that writes it) checked before start; the path is inside
    the seed folder when the writer is seeded, else inside the run folder. ``seeded``: runs once per training seed,
    into ``seed-<s>/``. ``always``: never skipped."""

    steps: tuple[Step, ...]
    needs: tuple[tuple[str, str], ...] = ()
    seeded: bool = False
    always: bool = False
    in_all: bool = True  # part of `workbench run all`
    claims: bool = False  # a side phase whose summary verification judges (a study's verify waits for it)


def _training(notebook: str, config: str, key: str, needs: tuple[tuple[str, str], ...] = ()) -> Phase:
    """A training phase: one notebook per training seed, with its YAML config and the run's data/."""
    step = Step(
        NOTEBOOKS / notebook, quick=QUICK_TRAINING, config=CONFIGS / config, paths=DATA, steps_key=key, task_sizes=True
    )
    return Phase((step,), needs=(*NEEDS_DATA, *needs), seeded=True)


def _reading_the_run(
    notebook: str, quick: Mapping, folder: str, needs: tuple[tuple[str, str], ...], claims: bool = False
) -> Phase:
    """A side phase over the whole run (not part of `all`): one notebook given the run folder and its seeds, writing
    into ``folder`` inside it."""
    step = Step(NOTEBOOKS / notebook, seeds_param=True, quick=quick, paths={"output_dir": folder, "run_dir": ""})
    return Phase((step,), needs=(*NEEDS_DATA, *needs), in_all=False, claims=claims)


PHASES: dict[str, Phase] = {
    "generate": Phase((Step(NOTEBOOKS / "00_generate_data.ipynb", quick=QUICK_DATA, task_sizes=True),)),
    "baseline": Phase(
        (
            Step(NOTEBOOKS / "01_baseline_probing.ipynb", task_paths=DATA),
            Step(NOTEBOOKS / "02_logit_lens.ipynb", task_paths=DATA),
        )
    ),
    "phase1": _training("03_dual_reward_training.ipynb", "phase1.yaml", "phase1"),
    "phase2": _training(
        "04_routing_training.ipynb",
        "phase2.yaml",
        "phase2",
        needs=TRAINED[:1],
    ),
    "verify": Phase((Step(NOTEBOOKS / "05_verification.ipynb", seeds_param=True, thresholds_param=True),), always=True),
    "compare": Phase(
        (Step(NOTEBOOKS / "07_comparisons.ipynb", seeds_param=True, quick=QUICK_COMPARE, paths=DATA),),
        needs=NEEDS_DATA,
        in_all=False,
    ),
    "causal": _reading_the_run(
        "08_is_the_classifier_used.ipynb", QUICK_CAUSAL, RunLayout.causal_dir.rel, TRAINED, claims=True
    ),
    "route": _reading_the_run("09_virtual_experts.ipynb", QUICK_ROUTE, RunLayout.route_dir.rel, TRAINED[:1]),
    "readouts": _reading_the_run(
        "10_readout_ladder.ipynb", QUICK_READOUTS, RunLayout.readouts_dir.rel, TRAINED[:1], claims=True
    ),
}


def phase_names(phase: str, phases: Mapping[str, Phase] = PHASES) -> list[str]:
    """``all`` -> every phase in order; a phase name -> itself; anything else is a one-line error."""
    if phase == ALL:
        return [name for name, spec in phases.items() if spec.in_all]
    if phase not in phases:
        choices = ", ".join([ALL, *phases])
        raise WorkbenchError(f"unknown phase {phase!r}: choose one of {choices}")
    return [phase]

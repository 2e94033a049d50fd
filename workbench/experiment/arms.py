"""The causal experiment's arms, from a run folder: the run's own adapters, and the controls trained beside them.

Per training seed ``s``:

- ``vo``: ``seed-s/phase1_adapter`` (phase 1 as the run trained it, LoRA on v_proj,o_proj);
- ``routing``: ``seed-s/phase2_adapter`` (phase 2 from that adapter, layers 0-L frozen);
- ``qk``, ``noclip``, ``control``: trained here into ``seed-s/causal/<arm>_adapter`` from that seed's phase-1 or
  phase-2 settings as the run resolved them (``config.json``: the same steps, seed and learning rate, and the run's
  ``data/``), with one change each (``ARM_CHANGES``). ``freeze_layers`` and the lens layer keep what the run's config wrote
  (``through-classifier``, ``auto``), so every depth resolves its own classifier layer.

An arm whose adapter is complete (``metrics.json`` written last by ``train``) is not trained again.
"""

from __future__ import annotations

from ..core.errors import WorkbenchError
from ..core.models import is_adapter_dir
from ..core.results import read_result
from ..training.config import TrainConfig, build_config
from ..training.loop import train
from .layout import PhaseFiles, RunLayout

# arm -> (the run's phase whose settings it starts from, what it changes)
ARM_CHANGES: dict[str, tuple[int, dict]] = {
    "qk": (1, {"lora_targets": "q_proj,k_proj"}),
    "noclip": (1, {"max_grad_norm": 0}),
    "control": (2, {"adapter": None}),
}
ARMS = ("vo", "qk", "routing", "control", "noclip")


def arm_config(files: PhaseFiles, arm: str) -> TrainConfig:
    """The training config of a control arm: the seed's phase-1 or phase-2 config as written, with the arm's change."""
    phase, change = ARM_CHANGES[arm]
    resolved_path = files.phase1_config if phase == 1 else files.phase2_config
    if not resolved_path.is_file():
        raise WorkbenchError(
            f"{resolved_path} not found: run `workbench run phase{phase} --out {files.root.parent}` first"
        )
    resolved = read_result(resolved_path)
    values = {k: v for k, v in resolved.items() if k in TrainConfig.model_fields}
    written = resolved.get("as_written") or {}
    if "freeze_layers" in written:
        values["freeze_layers"] = written["freeze_layers"]
    if "intermediate_loss.layer" in written:
        values["intermediate_loss"] = {**values["intermediate_loss"], "layer": written["intermediate_loss.layer"]}
    if "dtype" in written:
        values["dtype"] = written["dtype"]
    run = RunLayout(files.root.parent)
    if run.train_data.is_file() and run.heldout_data.is_file():  # the run's data/, wherever the folder is now
        values.update(data=str(run.train_data), eval_data=str(run.heldout_data))
    output = files.arm_adapter(arm)
    return build_config({**values, **change, "output": str(output), "resume": True, "save_every": None},
                        str(resolved_path))  # fmt: skip


def run_arms(layout: RunLayout, seeds: list[int], train_missing: bool = True, echo=print) -> dict[str, list[str]]:
    """Every arm's adapter folders, one per seed in ``seeds`` order; the control arms are trained first where they
    are missing (``train_missing``), the run's own adapters must exist."""
    arms: dict[str, list[str]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        files = layout.seed(seed)
        for arm, folder in (("vo", files.phase1_adapter), ("routing", files.phase2_adapter)):
            if not is_adapter_dir(folder):
                phase = 1 if arm == "vo" else 2
                raise WorkbenchError(
                    f"{folder} has no adapter: run `workbench run phase{phase} --out {layout.root}` first"
                )
            arms[arm].append(str(folder))
        for arm in ARM_CHANGES:
            folder = files.arm_adapter(arm)
            if not (folder / "metrics.json").is_file():
                if not train_missing:
                    raise WorkbenchError(f"{folder} is not trained: run `workbench run causal --out {layout.root}`")
                echo(f"training the {arm} arm of seed {seed} into {folder}")
                train(arm_config(files, arm), progress=False)
            arms[arm].append(str(folder))
    return arms

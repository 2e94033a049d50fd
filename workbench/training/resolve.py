"""What a training config's layer settings resolve to for a model of ``n_layers``: the layer the dual-reward lens loss
trains (``auto`` is the guide's depth rule), the classifier layer the evaluation reads, the frozen layers
(``through-classifier`` is 0 through it), and the config as resolved, written to the run's config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.guide import classifier_layer
from ..core.layers import format_layers, parse_layers
from .config import THROUGH_CLASSIFIER, TrainConfig


def parse_freeze(spec: str | None, n_layers: int, classifier: int) -> list[int]:
    """``freeze_layers``: a layer spec (``0-12``, ``0,1,2``) or ``through-classifier`` (0 through ``classifier``)."""
    if spec is None or not str(spec).strip():
        return []
    if str(spec).strip() == THROUGH_CLASSIFIER:
        return list(range(classifier + 1))
    try:
        return parse_layers(str(spec), n_layers)
    except WorkbenchError as exc:
        raise WorkbenchError(f"--freeze-layers: {exc} (or write {THROUGH_CLASSIFIER})") from None


def resolve_layer(cfg: TrainConfig, n_layers: int) -> int | None:
    """The layer the dual-reward lens loss trains (None without it): ``auto`` is the guide's depth rule."""
    il = cfg.intermediate_loss
    if not il.enabled:
        return None
    layer = classifier_layer(n_layers) if il.layer == "auto" else il.layer
    if not 0 <= layer < n_layers:
        raise WorkbenchError(f"intermediate_loss.layer {layer} is out of range: this model has layers 0-{n_layers - 1}")
    return layer


def resolve_classifier_layer(cfg: TrainConfig, n_layers: int) -> int:
    """The classifier layer of this run, which the evaluation reads and ``through-classifier`` freezes up to: the lens
    loss's layer when there is one; else the layer the continued adapter's lens loss trained (its config.json); else
    the guide's depth rule."""
    layer = resolve_layer(cfg, n_layers)
    if layer is not None:
        return layer
    recorded = Path(cfg.adapter or "") / "config.json"
    if cfg.adapter and recorded.is_file():
        trained = json.loads(recorded.read_text(encoding="utf-8")).get("intermediate_loss_layer")
        if isinstance(trained, int) and 0 <= trained < n_layers:
            return trained
    return classifier_layer(n_layers)


def as_resolved(cfg: TrainConfig, loss_layer: int | None, frozen: list[int], dtype: str | None = None) -> dict:
    """The config with ``auto`` and ``through-classifier`` replaced by what they resolved to (``dtype`` too); the
    values as written are kept under ``as_written``."""
    values = cfg.model_dump()
    written = {}
    if loss_layer is not None and values["intermediate_loss"]["layer"] != loss_layer:
        written["intermediate_loss.layer"] = values["intermediate_loss"]["layer"]
        values["intermediate_loss"]["layer"] = loss_layer
    if values["freeze_layers"] == THROUGH_CLASSIFIER:
        written["freeze_layers"] = THROUGH_CLASSIFIER
        values["freeze_layers"] = format_layers(frozen)
    if dtype is not None and values["dtype"] != dtype:
        written["dtype"] = values["dtype"]
        values["dtype"] = dtype
    return {**values, **({"as_written": written} if written else {})}

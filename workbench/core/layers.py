"""Layer indices, one home: which decoder layer a parameter belongs to, and layer specs (``all``, ``3,5``, ``2-8``)
parsed, checked against a model's depth and formatted back."""

from __future__ import annotations

import re

from .errors import WorkbenchError

_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The decoder layer a parameter or adapter key belongs to ("model.layers.3.self_attn..." -> 3), else None."""
    match = _LAYER_RE.search(name)
    return int(match.group(1)) if match else None


def parse_layers(text: str | None, n_layers: int) -> list[int]:
    """``all`` | ``3,5`` | ``2-8`` (inclusive) | a mix like ``0-3,10`` -> sorted layer indices, checked against the model."""
    if text is None or text.strip().lower() == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise WorkbenchError(f"layer spec {text!r}: {part!r} is not a layer or range; write all, 3,5 or 2-8")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise WorkbenchError(f"layer range {part!r} is reversed: write {hi}-{lo}")
        if hi >= n_layers:
            raise WorkbenchError(f"layer {hi} is out of range: this model has layers 0-{n_layers - 1}")
        layers.update(range(lo, hi + 1))
    return sorted(layers)


def check_layers(layers: list[int], n_layers: int, what: str = "layer") -> None:
    """Refuse a layer index outside 0..n_layers-1 (``what`` names it in the message: "layer", "--readout-layer")."""
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise WorkbenchError(f"{what} {bad[0]} is out of range: the model has layers 0-{n_layers - 1}")


def layer_spans(layers: list[int]) -> list[tuple[int, int]]:
    """Layer indices as inclusive runs: [0, 1, 2, 3, 7] -> [(0, 3), (7, 7)]."""
    spans: list[list[int]] = []
    for layer in sorted(set(layers)):
        if spans and layer == spans[-1][1] + 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return [(a, b) for a, b in spans]


def format_layers(layers: list[int]) -> str:
    """Layer indices as the spec ``parse_layers`` reads: [0, 1, 2, 3, 7] -> "0-3,7" ("" for none)."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in layer_spans(layers))

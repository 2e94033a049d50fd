"""How the findings and claims write their numbers in prose: a probability (``fmt_prob``; ``pct`` in the guide's
unit, x 100), a spread over seeds (``core.stats`` computes and writes it), layer indices as ranges, the remark that a
layer is the one the guide's depth rule picks, and the nouns of the task a result names (``nouns_for``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import guide, stats
from ..core.errors import WorkbenchError
from ..core.layers import layer_spans
from ..tasks.spec import Nouns, task_nouns


def fmt_prob(p: float | None) -> str:
    """A probability for prose: a percentage from 1% up, with two decimals from 99% up so that near-certainty stays
    visible ("42.3%", "99.94%"), scientific below 1% ("3.2e-09"), "n/a" for None."""
    if p is None:
        return "n/a"
    if p >= 0.99:
        return f"{p:.2%}"
    return f"{p:.1%}" if p >= 0.01 else f"{p:.1e}"


def pct(p: float) -> str:
    """A probability in the guide's unit (x 100), with enough digits that tiny values do not read as 0."""
    value = 100 * p
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.1f}%"
    return f"{value:.1e}%"


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """``v`` for one value; ``mean ± std [min, max]`` over seeds for several (``core.stats.spread``)."""
    return stats.spread(stats.over_seeds(values), fmt)


def layer_ranges(layers: list[int]) -> str:
    """Sorted layer indices as compact ranges: [10, 11, 12, 29] -> "L10-L12, L29" ("" for none)."""
    return ", ".join(f"L{a}" if a == b else f"L{a}-L{b}" for a, b in layer_spans(layers))


def classifier_layer_rule(layer: int, n_layers: int, sep: str = ", ") -> str:
    """``", the guide's int(0.55 × 30) rule"`` when ``layer`` is the one the guide's depth rule picks, else ""."""
    if layer != guide.classifier_layer(n_layers):
        return ""
    return f"{sep}the guide's int({guide.CLASSIFIER_DEPTH} × {n_layers}) rule"


def nouns_for(task: str | None) -> Nouns:
    """The nouns of the task a result names (a built-in task's name or a task file; None: the guide's arithmetic); a
    task file that is no longer there gives the defaults."""
    try:
        return task_nouns(task)
    except WorkbenchError:
        return Nouns()

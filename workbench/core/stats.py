"""Numbers over training seeds, one home: the mean, sample standard deviation, range and t interval of a measurement
(``over_seeds``), and the two ways the pages write them (``mean_std``: "0.93 ± 0.11"; ``spread``: "6.2% ± 4.3% [1.5%,
10.0%]"). One value is written alone: a spread needs two."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable


def over_seeds(values, confidence: float = 0.95) -> dict:
    """``n``, ``mean``, sample ``std`` (0.0 for one value), ``min``, ``max``, a t interval of the mean (``ci``, None
    below two values) and the ``values`` used: the numbers among ``values`` (None and NaN left out)."""
    got = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(got)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "ci": None, "values": []}
    mean = statistics.fmean(got)
    std = statistics.stdev(got) if n > 1 else 0.0
    ci = None
    if n > 1:
        from scipy import stats  # the t quantile: only an interval needs scipy

        half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / n**0.5
        ci = [mean - half, mean + half]
    return {"n": n, "mean": mean, "std": std, "min": min(got), "max": max(got), "ci": ci, "values": got}


def mean_std(stat: dict, spec: str = ".3f", missing: str = "—") -> str:
    """``mean ± std`` (the mean alone for one value, ``missing`` for none), each formatted with ``spec``."""
    if not stat or stat["mean"] is None:
        return missing
    return f"{stat['mean']:{spec}}" + (f" ± {stat['std']:{spec}}" if stat["n"] > 1 else "")


def spread(stat: dict, fmt: Callable[[float], str], unit: str = "") -> str:
    """``mean ± std [min, max]`` written with ``fmt`` (the value alone for one), ``unit`` after the mean
    ("6.33/8 ± 1.53 [5, 8]"); a sign ``fmt`` puts on the std is dropped."""
    if stat["n"] == 1:
        return fmt(stat["mean"]) + unit
    return f"{fmt(stat['mean'])}{unit} ± {fmt(stat['std']).lstrip('+')} [{fmt(stat['min'])}, {fmt(stat['max'])}]"

"""The two baseline measurements as single calls (what both the CLI and the notebooks run)."""

from __future__ import annotations

import time

from .activations import capture_last_token
from .lens import logit_lens
from .models import LoadedModel
from .probes import probe_layers
from .surface import bag_of_tokens
from .tasks import LabelledPrompts


def classifier_probe(
    lm: LoadedModel,
    data: LabelledPrompts,
    test_prompts: list[str] | None = None,
    layers: list[int] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Per-layer probe result dict: the guide's keys, fold stats, control task, test predictions and timings."""
    layers = list(range(lm.n_layers)) if layers is None else layers
    test_prompts = test_prompts or []
    t0 = time.perf_counter()
    feats = capture_last_token(lm, data.prompts + test_prompts, layers, batch_size)
    t1 = time.perf_counter()
    n = len(data.prompts)
    result = probe_layers(feats[:n].numpy(), data.labels, layers, seed, feats[n:].numpy(), test_prompts)
    t2 = time.perf_counter()
    surface = bag_of_tokens([lm.token_ids(p) for p in data.prompts], data.labels, seed)
    return {
        **lm.describe(),
        "num_layers": lm.n_layers,
        **result.to_dict(),
        "layers": layers,
        "prompts": data.by_class(),
        "test_prompts": test_prompts,
        "bag_of_tokens": surface,
        "timings_s": {"forward": t1 - t0, "probe_fit": t2 - t1},
    }


def lens_readout(lm: LoadedModel, prompts: list[str], targets: list[str], *args, **options) -> dict:
    """``logit_lens`` (same arguments: ``layer``, default the classifier layer; ``all_layers``; ``expected``; ...) as
    the result dict every file and figure here reads, with the model's description."""
    result = logit_lens(lm, prompts, targets, *args, **options)
    return {**lm.describe(), **result.to_dict()}

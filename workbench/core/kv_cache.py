"""The KV-cache shim: transformers >= 5.24 passes the cache to attention as ``cache=``, TransformerLens 4.3's attention
bridge reads only ``past_key_values=`` (or ``layer_past=``), so after booting a bridge the cache was never written and
every cached decode step attended only to itself (docs/gotchas.md). ``install()`` maps the new keyword onto the old one
in ``AttentionBridge._update_kv_cache``, once, before any bridge is booted; it does nothing where transformers still
uses the old keyword or TransformerLens already reads the new one (then this module can go).
"""

from __future__ import annotations

import functools
import inspect
import warnings

_MARK = "_workbench_cache_keyword"


def transformers_passes_cache_keyword() -> bool:
    """Whether this transformers' decoder layers hand the KV cache to attention as ``cache=`` (5.24 and later)."""
    from transformers.models.llama.modeling_llama import LlamaAttention

    return "cache" in inspect.signature(LlamaAttention.forward).parameters


def bridge_reads_cache_keyword() -> bool:
    """Whether TransformerLens's attention bridge already reads ``cache=`` itself."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    update = getattr(AttentionBridge._update_kv_cache, "__wrapped__", AttentionBridge._update_kv_cache)
    source = inspect.getsource(update)
    return '"cache"' in source or "'cache'" in source


def needed() -> bool:
    return transformers_passes_cache_keyword() and not bridge_reads_cache_keyword()


def installed() -> bool:
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return getattr(AttentionBridge._update_kv_cache, _MARK, False)


def install() -> bool:
    """Patch ``AttentionBridge._update_kv_cache`` when needed (idempotent). Returns whether the shim is active."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    if installed():
        return True
    if not needed():
        return False
    original = AttentionBridge._update_kv_cache

    @functools.wraps(original)
    def update(self, k, v, **kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        return original(self, k, v, **kwargs)

    setattr(update, _MARK, True)
    AttentionBridge._update_kv_cache = update
    # The bridge's forward hands HF its cache as past_key_values=, which 5.24 accepts with a notice per call.
    warnings.filterwarnings("ignore", message="`past_key_values` is deprecated", category=FutureWarning)
    return True

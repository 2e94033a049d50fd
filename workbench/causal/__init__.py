"""Causal tools: interventions on the residual stream that test whether a classifier is *used*, not only readable.

``patching``: activation patching (residual per layer/position, head outputs) through ``transformer_lens.patching``,
batched over prompt pairs. ``steering``: add a direction at a layer on every position and decode step, against a
random direction of the same norm. ``ablation``: a trained adapter's LoRA off per layer or module. ``heads``: zero- or
mean-ablated attention heads. ``attribution``: direct logit attribution and node-level attribution patching.
``interchange``: subspace interchange on the probe's basis against a placebo and a random basis.
"""

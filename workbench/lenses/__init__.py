"""Readouts of a layer's residual stream through the vocabulary, beside the logit lens: one interface (``base``) and
one module per readout (the logit lens, the linear shortcut, the tuned lens, the Jacobian lens, Patchscope, the probe
through the unembedding). Imports from core, tasks and training."""

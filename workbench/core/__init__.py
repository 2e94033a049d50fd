"""The core: a model spec becomes a loaded model (HF + peft inside, the TransformerLens bridge outside); prompts become
activations at hook points; probes and the logit lens read them. Imports nothing from the other layers."""

"""Training: the YAML schema, the losses (answer CE and the lens CE of the dual reward), the plain training loop with
its checkpoints, GRPO through TRL, and the held-out evaluation. Imports from the core and tasks."""

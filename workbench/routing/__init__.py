"""Virtual experts: a router reads a prompt (often only up to the classifier layer) and picks the expert that answers.

``prompts`` (the routing evaluation set), ``experts`` (calculator, the model, a user's function), ``routers`` (regex,
direction, probe, lens, neural; fitted routers saved as small JSON files) and ``virtual`` (route, answer, time, score).
"""

"""Causal tools: interventions on the residual stream that test whether a classifier is *used*, not only readable.

``steering``: add a direction at a layer on every position and every decode step, strength in units of the layer's
median residual norm, against a random direction of the same norm.
"""

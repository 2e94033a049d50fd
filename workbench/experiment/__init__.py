"""The experiment: the run folder's layout, the phase table, the plan and the papermill engine that runs it, the
numbers read from a run (measurements, summaries, training results, prose), the claims and their report, the
comparison tables, the causal arms and publishing. Imports from core, tasks, training, causal and routing."""

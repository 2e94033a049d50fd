"""Layer 3, the experiment: the run folder's layout, the phase table and the papermill engine that runs it, the
headline numbers, the claims and their report, the comparison tables and publishing. Imports from core and train."""

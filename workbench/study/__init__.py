"""Studies: models × tasks × seeds × phases from one YAML file (``spec``), as jobs that each run one phase for one seed
into a run folder (``jobs``), on an executor (``executors``: inline, submitit's local processes, SLURM), with each
job's state (``status``) and `workbench study run`'s submission, resume and lock (``driver``)."""

"""What SLURM costs a study's job, against the phase's own time: for each job of a finished SLURM study, from sacct
(Submit, Eligible, Start) and the job's state file (when `run_job` began) and marker (the phase's seconds):

- waited for dependencies: Submit -> Eligible (afterok: the jobs it reads from were running);
- eligible -> started: the scheduler's latency;
- started -> the phase's first line: the job's Python starting, unpickling and importing before the engine runs;
- overhead / phase: (latency + start-up) / the phase's time.

sacct's times have a resolution of one second: a latency of 0 means under a second.

    python benchmarks/study_overhead.py STUDY.yaml [--report --root .]

The study must have run with executor slurm on a cluster whose sacct answers (scripts/slurm-cluster's does).
``--report`` keeps the numbers as docs/records/slurm_overhead.json and renders its block in docs/studies.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from workbench.experiment import publish, study_page
from workbench.experiment.engine import git_commit
from workbench.study.jobs import read_state, study_jobs
from workbench.study.spec import load_study
from workbench.study.status import read_submissions


def _sacct(job_id: str) -> dict[str, float]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "Submit,Eligible,Start,End"],
                         capture_output=True, text=True, check=True).stdout.split("\n")[0]  # fmt: skip
    return {
        k: datetime.fromisoformat(v).timestamp() for k, v in zip(("submit", "eligible", "start", "end"), out.split("|"))
    }


def measure(path: str) -> dict:
    study = load_study(path)
    study_dir = Path(study.out).resolve()
    subs = read_submissions(study_dir)
    jobs = []
    for job in study_jobs(study):
        sub = subs.get(job.key) or {}
        if sub.get("executor") != "slurm":
            sys.exit(
                f"{job.key} did not run on SLURM (executor {sub.get('executor')!r}): run the study with executor slurm"
            )
        times, state = _sacct(sub["job_id"]), read_state(study_dir, job)
        marker = json.loads((study_dir / job.run / "phases" / f"{job.run_key}.done.json").read_text())
        schedule, startup = times["start"] - times["eligible"], state["started"] - times["start"]
        jobs.append({
            "key": job.key, "dependency_s": times["eligible"] - times["submit"], "schedule_s": schedule,
            "startup_s": startup, "phase_s": marker["seconds"], "ratio": (schedule + startup) / marker["seconds"],
        })  # fmt: skip
    where = f"{platform.node()} ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} when measured), one-node SLURM"
    return {"file": path, "where": where + " (scripts/slurm-cluster)", "jobs": jobs,
            "git_commit": git_commit()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study")
    parser.add_argument("--report", action="store_true", help="keep the numbers as docs/records/slurm_overhead.json")
    parser.add_argument("--root", default=".", help="with --report: the repository whose docs get the record")
    args = parser.parse_args()
    record = measure(args.study)
    print(study_page.overhead_text(record))
    if args.report:
        root = Path(args.root)
        (root / publish.RECORDS / "slurm_overhead.json").write_text(json.dumps(record, indent=1) + "\n")
        publish.write_pages(root)
        print(f"SUMMARY study_overhead --report: wrote {root / publish.RECORDS / 'slurm_overhead.json'} and its block")


if __name__ == "__main__":
    main()

"""The study block of docs/studies.md, rendered from its record (``docs/records/study.json``, made by
``workbench.study.report.study_record`` through `workbench publish --study FILE`)."""

from __future__ import annotations

from statistics import median

from .crosstask import cross_task_table


def page_text(record: dict) -> str:
    study, jobs = record["study"], record["jobs"]
    executor = study["executor"]
    commits = sorted({j["git_commit"] for j in jobs if j.get("git_commit")})
    lines = [
        f"Measured by `workbench study run {record['file']}` ({len(jobs)} jobs: models {', '.join(study['models'])}; "
        f"tasks {', '.join(study['tasks'])}; {study['seeds']} seeds; phases {', '.join(study['phases'])}; executor "
        f"{executor['kind']}, at most {executor['max_jobs']} jobs at once), git commit {', '.join(f'`{c}`' for c in commits)}.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| wall time, first job's start to last job's end | {record['wall_seconds']:.0f} |",
        f"| the jobs' own times summed (the same phases one after another) | {record['job_seconds']:.0f} |",
        f"| ratio | {record['job_seconds'] / record['wall_seconds']:.2f} |" if record["wall_seconds"] else "",
        "",
        "Each phase's job time (median over the study's jobs of that phase, seconds):",
        "",
        "| phase | jobs | median | max |",
        "|---|---:|---:|---:|",
    ]
    for phase in dict.fromkeys(j["phase"] for j in jobs):
        times = [j["seconds"] for j in jobs if j["phase"] == phase and j["seconds"] is not None]
        lines.append(f"| {phase} | {len(times)} | {median(times):.0f} | {max(times):.0f} |")
    lines += ["", "The cross-task table over the study's run folders (mean ± std over seeds):", "",
              cross_task_table(record["runs"])]  # fmt: skip
    return "\n".join(line for line in lines if line is not None) + "\n"


def overhead_text(record: dict) -> str:
    """SLURM's cost per job against the phase's own time, from ``benchmarks/study_overhead.py --report``."""
    jobs = record["jobs"]
    lines = [
        f"Measured by `python benchmarks/study_overhead.py {record['file']}` on {record['where']} (git commit "
        f"`{record['git_commit']}`): per job, from sacct and the job's own state file.",
        "",
        "| job | waited for dependencies (s) | eligible → started (s) | started → phase's first line (s) | phase (s) | overhead / phase |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for j in jobs:
        lines.append(
            f"| {j['key']} | {j['dependency_s']:.1f} | {j['schedule_s']:.1f} | {j['startup_s']:.1f} | "
            f"{j['phase_s']:.1f} | {j['ratio']:.3f} |"
        )
    lines += ["", f"Median over {len(jobs)} jobs: eligible → started {median(j['schedule_s'] for j in jobs):.2f} s, "
              f"started → first line {median(j['startup_s'] for j in jobs):.2f} s, overhead / phase "
              f"{median(j['ratio'] for j in jobs):.3f}."]  # fmt: skip
    return "\n".join(lines) + "\n"

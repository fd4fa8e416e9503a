"""The code itself: no unused imports or names, no undefined names."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pyflakes_finds_nothing_in_the_service_tests_or_benchmarks():
    found = subprocess.run(
        [sys.executable, "-m", "pyflakes", "service", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout + found.stderr


# JobRepo (service/jobs/repo.py) owns the jobs and job_progress collections:
# no other module queries them, through the database's handles or the repo's.
JOB_COLLECTION_USE = re.compile(r"(?:\bdb|\brepo)\.(?:jobs|job_progress|runs)\.\w+\(|\bdb\[[\"'](?:jobs|job_progress)[\"']\]")
JOB_COLLECTION_OWNERS = {
    "service/jobs/repo.py",
    "service/store/db.py",  # declares the handles (db["jobs"]) that JobRepo is given
    # TODO engine: moved by the engine change
    "service/jobs/runner.py",
    "service/teams/batch.py",
}


def test_only_the_job_repo_queries_the_jobs_and_job_progress_collections():
    found = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in JOB_COLLECTION_OWNERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if JOB_COLLECTION_USE.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "queries of jobs/job_progress outside JobRepo:\n" + "\n".join(found)

"""The code itself: rules about where things may be done (lint, format and
types are scripts/lint's, which scripts/test runs first)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# JobRepo (service/jobs/repo.py) owns the jobs and job_progress collections:
# no other module queries them, through the database's handles or the repo's.
JOB_COLLECTION_USE = re.compile(r"(?:\bdb|\brepo)\.(?:jobs|job_progress|runs)\.\w+\(|\bdb\[[\"'](?:jobs|job_progress)[\"']\]")
JOB_COLLECTION_OWNERS = {
    "service/jobs/repo.py",
    "service/store/db.py",  # declares the handles (db["jobs"]) that JobRepo is given
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


# Job code writes only through the fenced handles of its context
# (service/jobs/fence.py): no module a job kind runs names the database or
# calls a collection's write methods itself.
JOB_CODE = ("service/jobs/kinds", "service/teams/batch.py", "service/profiles/guard.py")
UNFENCED_WRITE = re.compile(
    r"\.(?:insert_one|insert_many|update_one|update_many|delete_one|delete_many|replace_one|bulk_write|"
    r"find_one_and_update|find_one_and_delete|find_one_and_replace|drop)\(|\bctx\._db\b|\bctx\.db\b|\binsert_encoded\(|\binsert_new\("
)


def lines_matching(pattern: re.Pattern[str], entries: tuple[str, ...]) -> list[str]:
    """``path:line: text`` of each line that matches, in the files and folders named."""
    found = []
    for entry in entries:
        paths = sorted((ROOT / entry).rglob("*.py")) if (ROOT / entry).is_dir() else [ROOT / entry]
        for path in paths:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}")
    return found


def test_job_code_cannot_write_but_through_its_fenced_handles():
    found = lines_matching(UNFENCED_WRITE, JOB_CODE)
    assert not found, "writes outside the fenced handles:\n" + "\n".join(found)


# Job code reads its parameters as the attributes of its kind's params class
# (service/jobs/params.py), parsed once: never a key of the stored dict.
PARAMS_BY_KEY = re.compile(r"\bparams(?:\[|\.get\()|\[[\"']params[\"']\]\s*(?:\[|\.get\()")


def test_job_code_reads_its_params_as_typed_attributes_not_by_key():
    readers = (*JOB_CODE, "service/jobs/runner.py", "service/api/exports.py", "service/api/export_preview.py")
    found = lines_matching(PARAMS_BY_KEY, readers)
    assert not found, "params read by key:\n" + "\n".join(found)

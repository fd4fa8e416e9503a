"""How records are keyed. A record's _id is "org/dataset/job:row": deterministic
from (job, row), so a replayed batch cannot insert a row twice, and ordered so
that a dataset's records (an export) and a job's records (a rollback) are each
one range of the primary key. Org ids and dataset names cannot contain '/'."""
from __future__ import annotations


def dataset_prefix(org_id: str, dataset: str) -> str:
    return f"{org_id}/{dataset}/"


def job_prefix(org_id: str, dataset: str, job_id: str) -> str:
    return f"{dataset_prefix(org_id, dataset)}{job_id}:"


def row_id(prefix: str, row: int) -> str:
    """The _id of ``row`` under a job_prefix; zero-padded, so _id order is file
    order within a job."""
    return f"{prefix}{row:010d}"


def record_id(org_id: str, dataset: str, job_id: str, row: int) -> str:
    return row_id(job_prefix(org_id, dataset, job_id), row)


def prefix_range(prefix: str) -> dict[str, str]:
    """The _id range of every string starting with ``prefix`` (which ends in a
    separator, '/' or ':', each followed in ASCII by the next character)."""
    return {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}

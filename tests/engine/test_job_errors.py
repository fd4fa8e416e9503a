"""What a job's ``error`` tells every viewer of its org (issue 23, finding 7):
a plain message with an id, never the text of an internal error; the detail
goes to the log line with that id."""

from __future__ import annotations

import logging

import pytest

from service.jobs.runner import JobContext, Kind

from .conftest import create_job, wait_job

SECRET = "ConnectionError: 10.0.3.7:27017 (configured timeouts: timeoutMS: 30000.0ms)"


async def test_a_job_that_crashes_shows_an_error_id_and_not_the_internal_text(db, replicas, caplog: pytest.LogCaptureFixture):
    async def run(ctx: JobContext) -> None:
        raise RuntimeError(SECRET)

    async def nothing(ctx: JobContext) -> None:
        return None

    replica = await replicas({"crash": Kind(name="crash", run=run, rollback=nothing, cleanup=nothing)})
    with caplog.at_level(logging.ERROR, logger="service.jobs.runner"):
        job_id = await create_job(replica, "crash", {})
        failed = await wait_job(db, job_id, lambda j: j["state"] == "failed", "the job to fail")
    assert "10.0.3.7" not in failed["error"] and "RuntimeError" not in failed["error"]
    assert "error id" in failed["error"] and failed["retryable"] is True
    error_id = failed["error"].split("error id ")[1].split(")")[0]
    logged = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert logged and SECRET in logged[0].exc_text

"""What an operator sees: /metrics (prometheus_client text) and JSON log lines
with the job's fields, from real jobs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import logs

from ..support.helpers import control, make_csv, start_import, wait_for_state, wait_until_processed, wait_until_settled


async def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_rows_outcomes_rollbacks_and_database_operations(make_client):
    client = await make_client(max_running_jobs=1)
    done = await start_import(client, make_csv(1500), batch_size=500)
    await wait_for_state(client, done["id"], "completed")
    stopped = await start_import(client, make_csv(20_000), dataset="other", batch_size=100)
    await wait_until_processed(client, stopped["id"], 300)
    await control(client, stopped["id"], "pause")
    paused = await wait_until_settled(client, stopped["id"])
    queued = await start_import(client, make_csv(10), dataset="third")

    deadline = time.monotonic() + 30
    while value(samples := await scrape(client), "collect_jobs_queue_depth") < 1:
        assert time.monotonic() < deadline, "the queue was never sampled"
        await asyncio.sleep(0.05)
    assert value(samples, "collect_jobs_queue_oldest_age_seconds") >= 0
    assert value(samples, "collect_jobs_runners", kind="import", state="paused") == 1

    await control(client, stopped["id"], "terminate")
    await wait_for_state(client, stopped["id"], "terminated")
    await wait_for_state(client, queued["id"], "completed")
    # A job's end is counted just after its final state is written: poll.
    while (
        value(samples := await scrape(client), "collect_jobs_job_duration_seconds_count", kind="import", outcome="completed") < 2
    ):
        assert time.monotonic() < deadline + 30, "the second completed import was never counted"
        await asyncio.sleep(0.05)

    processed = 1500 + paused["progress"]["processed"] + 10
    assert value(samples, "collect_jobs_rows_processed_total", kind="import") == processed
    assert value(samples, "collect_jobs_job_duration_seconds_count", kind="import", outcome="completed") == 2
    assert value(samples, "collect_jobs_job_duration_seconds_count", kind="import", outcome="terminated") == 1
    assert value(samples, "collect_jobs_rollback_duration_seconds_count", kind="import") == 1
    assert value(samples, "collect_jobs_rollback_rows_total", kind="import") == paused["progress"]["inserted"]
    assert value(samples, "collect_jobs_db_operation_seconds_count", command="insert") > 0
    assert value(samples, "collect_jobs_accepting") == 1
    assert all("job_id" not in dict(labels) for _, labels in samples), "no metric may have a job_id label"


@pytest.fixture
def json_log() -> io.StringIO:
    """The service's own JSON logging set-up, writing into a buffer; pytest's
    handlers are put back afterwards."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    buffer = io.StringIO()
    logs.configure("INFO", "json", stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


async def test_every_line_a_job_logs_is_one_json_object_with_its_fields(client, json_log):
    job = await start_import(client, make_csv(3000), batch_size=500)
    await wait_until_processed(client, job["id"])
    await control(client, job["id"], "pause")
    await wait_until_settled(client, job["id"])
    await control(client, job["id"], "terminate")
    await wait_for_state(client, job["id"], "terminated")

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    ours = [line for line in lines if line.get("job_id") == job["id"]]
    assert {"running", "paused", "terminating"} <= {line["state"] for line in ours}, ours
    for line in ours:
        assert line["org_id"] == "default" and line["kind"] == "import"
        assert {"time", "level", "logger", "message"} <= set(line)
    job_lines = [line for line in lines if line["logger"].startswith("service.jobs") and job["id"] in line["message"]]
    assert job_lines and all(line.get("job_id") == job["id"] for line in job_lines)

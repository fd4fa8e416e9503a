"""Races and odd inputs around undo and bulk control that a review (issue 25)
found, each fixed; the tests began as the review's failing probes."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io

import pytest

from service.errors import InvalidTransition
from service.jobs.repo import JobRepo
from service.retention import delete_job
from service.store.clock import DbClock
from service.store.teams import undo_range

from ..support.helpers import control, get_job, make_csv, post_teams, sheet, start_import, team_rows, wait_for, wait_for_state
from .test_teams import ORG


async def _undo(client, job_id: str) -> tuple[int, dict]:
    resp = await client.post(f"/api/v1/jobs/{job_id}/undo")
    return resp.status, await resp.json(content_type=None)


async def test_a_delete_that_read_the_job_before_an_undo_changes_nothing_and_the_undo_finishes(client, db):
    """Was: DELETE /jobs/{id} of a completed teams job reads the job, then drops
    its undo log and deletes its two documents. An undo that lands between the
    read and the deletes (the handler awaits in between) wins the guarded
    write, so jobs.delete_one (filtered by the state read) matches nothing, but
    the undo log is dropped anyway and job_progress is deleted unconditionally
    (repo.delete_finished). The job stays `undoing` forever: no replica can
    claim a job without a progress document, its teams are never removed, and
    it holds the org's only teams slot, so every later teams job of the org
    stays queued. The retention sweep's delete (finished_before, then
    delete_job per job) has the same window. Here the interleaving is made
    deterministic: the DELETE handler's read, then the undo, then the rest of
    the DELETE handler (retention.delete_job with the document it read)."""
    job = await post_teams(client, sheet(team_rows(3)))
    await wait_for_state(client, job["id"], "completed")
    log_before = await db.undo.count_documents({"_id": undo_range(job["id"])})
    repo = JobRepo(db.jobs, db.job_progress, DbClock(), 10.0)
    read_by_delete = await repo.get(ORG, job["id"])  # service/api/jobs.py delete_job: repo.get

    status, body = await _undo(client, job["id"])
    assert status == 200 and body["state"] == "undoing", body

    with pytest.raises(InvalidTransition):  # the rest of the DELETE handler: a 409 now, nothing deleted
        await delete_job(db, repo, read_by_delete)
    assert await db.undo.count_documents({"_id": undo_range(job["id"])}) == log_before

    later = await post_teams(client, sheet(team_rows(2, start=50)))
    try:
        done = await wait_for_state(client, job["id"], "undone", timeout=20)
    except AssertionError:
        shown = await get_job(client, job["id"])
        progress_doc = await db.job_progress.find_one({"_id": job["id"]})
        later_state = (await get_job(client, later["id"]))["state"]
        teams_left = await db.teams.count_documents({"job_id": job["id"]})
        raise AssertionError(
            f"undo never finished: state={shown['state']}, job_progress document={progress_doc}, "
            f"teams of the job still present={teams_left}, undo log entries {log_before} -> "
            f"{await db.undo.count_documents({'_id': undo_range(job['id'])})}, the org's next teams job is {later_state}"
        ) from None
    assert await db.teams.count_documents({"job_id": job["id"]}) == 0, done


async def test_created_after_finds_a_job_whose_upload_took_a_few_seconds(client, db):
    """Was: the bulk filter's created_after also bounds _id by
    ObjectId.from_datetime(created_after) (service/api/bulk.py job_filter), on
    the assumption that "ids are ObjectIds, made at creation". They are not:
    an import's id is made before its upload is read (the @idempotent claim,
    or a stale claim's taken-over resource_id), while created_at is set when
    the job document is inserted after the upload. A job whose upload took
    longer than a second is missed by a filter on its own created_at: an
    incident's "terminate every import created after 10:00" skips the import
    whose upload started 09:58 and finished 10:01 (created_at 10:01)."""

    async def slow_body():
        data = make_csv(200)
        yield data[:100]
        await asyncio.sleep(2.5)
        yield data[100:]

    resp = await client.post(
        "/api/v1/jobs/import", params={"dataset": "slow"}, data=slow_body(), headers={"Content-Type": "text/csv"}
    )
    job = await resp.json()
    assert resp.status == 202, job
    created_at = job["created_at"]
    answer = await (
        await client.post("/api/v1/jobs/pause", params={"dry_run": "true"}, json={"filter": {"created_after": created_at}})
    ).json()
    listed = await (await client.get("/api/v1/jobs")).json()
    visible = [j["id"] for j in listed["jobs"] if j["created_at"] >= created_at]
    assert job["id"] in visible
    try:
        assert [j["id"] for j in answer["jobs"]] == [job["id"]], (
            f"created_after={created_at} (the job's own created_at) matched {answer['matched']} jobs; "
            f"the job's id time is {dt.datetime.fromtimestamp(int(job['id'][:8], 16), dt.timezone.utc).isoformat()}"
        )
    finally:
        await wait_for_state(client, job["id"], "completed")


async def test_a_json_number_too_long_for_an_int_is_a_400(client, db):
    """Was: json.loads raises a plain ValueError (not JSONDecodeError) for an
    integer of more than 4,300 digits; service/api/common.py json_object only
    catches JSONDecodeError/UnicodeDecodeError, so the body of a bulk request
    (or of an undo) gives a 500 "unexpected error" instead of a 400."""
    body = '{"filter": {}, "limit": ' + "9" * 5000 + "}"
    resp = await client.post("/api/v1/jobs/pause", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400, (resp.status, await resp.text())


async def test_an_export_that_spans_an_undo_of_its_import_fails_rather_than_keep_part_of_it(client, db):
    """Was: an export's imports are fixed when it is created (params.jobs) and
    it never looks at their state again, so an import undone while the export
    is paused (or just running) leaves a file with the rows read before the
    undo and none after: a completed export holding part of an import that no
    longer exists. README ("Undo and bulk control") says an export "stops
    reading its rows the moment it is undoing"; it does not stop, it just finds
    fewer rows. (service/jobs/kinds/exports.py export_query; README.)"""
    rows = 3000
    first = await start_import(client, make_csv(rows, columns=5), dataset="people", types="id:int,day:date")
    await wait_for_state(client, first["id"], "completed")
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people", "batch_size": 10})
    export = await resp.json()
    assert resp.status == 202, export
    await wait_for(client, export["id"], lambda j: j["progress"].get("processed", 0) > 0)
    await control(client, export["id"], "pause")
    await wait_for_state(client, export["id"], "paused")

    status, body = await _undo(client, first["id"])
    assert status == 200, body
    await wait_for_state(client, first["id"], "undone", timeout=60)
    await control(client, export["id"], "resume")
    final = await wait_for_state(client, export["id"], "completed", "failed", "terminated", timeout=60)
    if final["state"] == "completed":
        data = await (await client.get(f"/api/v1/jobs/{export['id']}/result")).read()
        written = len(list(csv.reader(io.StringIO(data.decode(), newline="")))) - 1
        assert written in (0, rows), f"the completed export holds {written} of the undone import's {rows} rows"
    else:
        assert final["state"] == "failed" and "was undone or terminated" in final["error"], final
        assert final["retryable"] is False


async def test_a_delete_and_an_undo_sent_at_once_do_not_both_succeed(client, db):
    """Was: the same as the deterministic probe above, over HTTP with no help:
    DELETE /jobs/{id} and POST /jobs/{id}/undo sent at once on a completed
    teams job both answer success (204 and 200) on the first try here; the job
    is left `undoing` with no job_progress document, i.e. stuck forever."""
    for i in range(8):
        job = await post_teams(client, sheet(team_rows(2, start=100 + 10 * i)))
        await wait_for_state(client, job["id"], "completed")
        deleted, undone = await asyncio.gather(
            client.delete(f"/api/v1/jobs/{job['id']}"), client.post(f"/api/v1/jobs/{job['id']}/undo")
        )
        if undone.status == 200:
            doc = await db.jobs.find_one({"_id": job["id"]})
            progress = await db.job_progress.find_one({"_id": job["id"]})
            assert deleted.status != 204, f"both won on try {i}: job {doc and doc['state']}, job_progress {progress}"
            await wait_for_state(client, job["id"], "undone", timeout=30)

"""Catching a wrong file before it lands: the import dry run, the guard, and
the dataset profiles they compare with."""

from __future__ import annotations

from typing import Any

from ..support.helpers import control, start_import, wait_for_state
from .people import COLUMNS, change, people, swap, to_csv

TYPES = "age:int,visited:date"
COLLECTIONS = ("records", "jobs", "job_progress", "uploads.files", "uploads.chunks", "dataset_profiles")


async def everything(db) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection."""
    names = sorted(await db.db.list_collection_names())
    assert set(COLLECTIONS) <= set(names), names
    return {name: await db.db[name].find().sort("_id", 1).to_list(None) for name in names}


async def import_history(client, seeds=(1, 2, 3)) -> None:
    for seed in seeds:
        job = await start_import(client, to_csv(people(seed)), types=TYPES)
        done = await wait_for_state(client, job["id"], "completed", "failed")
        assert done["state"] == "completed" and done["findings"] == [], done


async def test_swapped_name_and_phone_are_named_by_the_dry_run_and_pause_the_guarded_import(client, db):
    await import_history(client)
    swapped = to_csv(swap(people(4), "name", "phone"))

    before = await everything(db)
    review = await start_import(client, swapped, expect=200, dry_run="true", types=TYPES)
    assert await everything(db) == before
    assert review["rows"] == review["valid_rows"] == 200
    assert review["header"]["status"] == "same" and review["earlier_imports"] == 3
    [finding] = review["findings"]
    assert finding["kind"] == "swapped_columns" and sorted(finding["columns"]) == ["name", "phone"]
    assert "`name` and `phone` look swapped" in finding["message"]
    assert "of `phone` looks like names, as `name` did in 3 earlier imports" in finding["message"]
    assert finding["evidence"]["phone"]["now"]["name"] > 0.9

    job = await start_import(client, swapped, guard="pause", types=TYPES)
    paused = await wait_for_state(client, job["id"], "paused", "completed", "failed")
    assert paused["state"] == "paused"
    assert [f["kind"] for f in paused["pause_reason"]["findings"]] == ["swapped_columns"]
    assert paused["pause_reason"]["by"] == "guard" and paused["findings"] == paused["pause_reason"]["findings"]
    assert paused["progress"]["inserted"] == 0
    assert await db.records.count_documents({"job_id": job["id"]}) == 0

    resumed = await control(client, job["id"], "resume")
    assert resumed["pause_reason"] is None
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["state"] == "completed" and done["progress"]["inserted"] == 200
    assert await db.records.count_documents({"job_id": job["id"]}) == 200


async def test_terminating_a_guard_paused_import_leaves_nothing(client, db):
    await import_history(client)
    before = await everything(db)
    job = await start_import(client, to_csv(swap(people(5), "name", "phone")), guard="pause", types=TYPES)
    await wait_for_state(client, job["id"], "paused")

    await control(client, job["id"], "terminate")
    done = await wait_for_state(client, job["id"], "terminated")

    assert done["progress"]["inserted"] == 0 and done["progress"]["rolled_back"] == 0
    after = await everything(db)
    for name in ("records", "uploads.files", "uploads.chunks", "dataset_profiles"):
        assert after[name] == before[name], name


async def test_twenty_fresh_correct_files_raise_no_finding(client, db):
    await import_history(client)
    for seed in range(100, 120):
        rows = people(seed, rows=150 + seed % 7 * 20, blanks=6)
        review = await start_import(client, to_csv(rows), expect=200, dry_run="true", types=TYPES)
        assert review["findings"] == [], (seed, review["findings"])
        assert review["header"]["status"] == "same"


async def test_a_date_column_now_text_is_type_drift_and_a_full_column_now_empty_is_a_null_spike(client):
    await import_history(client)
    rows = change(people(6), "visited", lambda i, v: "last week" if i % 10 else v)
    rows = change(rows, "email", lambda i, v: v if i % 10 == 0 else "")

    review = await start_import(client, to_csv(rows), expect=200, dry_run="true")

    by_kind = {f["kind"]: f for f in review["findings"]}
    assert set(by_kind) == {"type_drift", "null_spike"}
    assert by_kind["type_drift"]["columns"] == ["visited"]
    assert "`visited` held dates in 3 earlier imports (imported as date)" in by_kind["type_drift"]["message"]
    assert by_kind["null_spike"]["columns"] == ["email"]
    assert by_kind["null_spike"]["message"].startswith("`email` is 90% empty; in 3 earlier imports it was 0% empty")


async def test_a_reordered_header_is_refused_with_header_match_and_reported_otherwise(client, db):
    await import_history(client, seeds=(1,))
    order = ["phone", "name", "email", "age", "visited"]
    rows = [[r[COLUMNS.index(c)] for c in order] for r in people(7)]
    jobs_before = await db.jobs.count_documents({})

    refused = await start_import(client, to_csv(rows, order), expect=400, header="match")
    assert refused["parameter"] == "header" and refused["reordered"] is True
    assert refused["expected"] == COLUMNS and refused["found"] == order
    assert "the columns are in another order" in refused["detail"]
    assert await db.jobs.count_documents({}) == jobs_before
    assert await db.db["uploads.files"].count_documents({}) == 0

    review = await start_import(client, to_csv(rows, order), expect=200, dry_run="true")
    assert review["header"]["status"] == "reordered" and review["findings"] == []
    lacking = [r[:4] + ["x"] for r in people(8)]
    review = await start_import(client, to_csv(lacking, COLUMNS[:4] + ["city"]), expect=200, dry_run="true")
    assert [f["kind"] for f in review["findings"]] == ["header_mismatch"]
    assert review["findings"][0]["message"] == "The header differs from the dataset's: it lacks `visited`; it adds `city`."
    await start_import(client, to_csv(people(9)), header="match", types=TYPES)


async def test_with_the_default_guard_findings_are_recorded_on_the_job_and_its_events_and_it_goes_on(client, db):
    await import_history(client)
    job = await start_import(client, to_csv(swap(people(10), "name", "phone")), types=TYPES)
    assert job["params"]["guard"] == "warn"

    done = await wait_for_state(client, job["id"], "completed", "failed")

    assert done["state"] == "completed" and done["progress"]["inserted"] == 200
    assert [f["kind"] for f in done["findings"]] == ["swapped_columns"]
    assert done["progress"]["guard"]["rows_checked"] == 200 and done["pause_reason"] is None
    resp = await client.get(f"/api/v1/jobs/{job['id']}/events")
    assert "swapped_columns" in await resp.text()


async def test_a_dataset_without_history_gets_profiles_and_no_findings_and_completed_imports_build_its_profile(client, db):
    review = await start_import(client, to_csv(swap(people(11), "name", "phone")), expect=200, dry_run="true")
    assert review["findings"] == [] and review["header"]["status"] == "new_dataset"
    columns = {c["name"]: c for c in review["columns"]}
    assert columns["age"]["inferred_type"] == "int" and columns["visited"]["inferred_type"] == "date"
    assert columns["phone"]["profile"]["shares"]["name"] > 0.95

    await import_history(client, seeds=range(20, 27))

    stored = await db.db["dataset_profiles"].find_one({"_id": "default/people"})
    assert stored["org_id"] == "default" and stored["columns"] == COLUMNS
    assert len(stored["imports"]) == 5  # the last five, however many there were
    assert stored["imports"][-1]["profile"]["email"]["kinds"]["email"] >= 190


async def test_another_orgs_profile_is_never_read(make_client, db):
    other = await make_client(default_org_id="other")
    await import_history(other)
    client = await make_client()
    review = await start_import(client, to_csv(swap(people(12), "name", "phone")), expect=200, dry_run="true")
    assert review["earlier_imports"] == 0 and review["findings"] == []
    assert (await db.db["dataset_profiles"].find_one({"_id": "other/people"}))["org_id"] == "other"
    assert await db.db["dataset_profiles"].find_one({"_id": "default/people"}) is None

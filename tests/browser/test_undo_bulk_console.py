"""The support user's undo of a finished import, and the operator's bulk pause
of a filtered selection during an incident, in a real Chromium."""

from __future__ import annotations

import re

from playwright.async_api import expect

from service.store.records import job_prefix, prefix_range

from ..support.helpers import get_job, make_csv, post_teams, sheet, start_import, team_rows, wait_for, wait_for_state
from .conftest import screenshot, seen, unlabelled

ORG = "default"


async def rows_of(db, job) -> int:
    return await db.records.count_documents({"_id": prefix_range(job_prefix(ORG, job["params"]["dataset"], job["id"]))})


async def test_undo_of_a_finished_import_asks_with_the_dry_runs_counts_then_rolls_it_back(server, api, open_page, db):
    wrong = await start_import(api, make_csv(1200), dataset="baseline", types="id:int,day:date")
    wrong = await wait_for_state(api, wrong["id"], "completed")
    kept = await start_import(api, make_csv(300, start=5000), dataset="baseline", types="id:int,day:date")
    kept = await wait_for_state(api, kept["id"], "completed")
    page = await open_page(str(server.make_url(f"/#/jobs/{wrong['id']}")))

    await page.get_by_role("button", name=re.compile("^Undo")).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading", name="Undo baseline ← upload.csv?")).to_be_visible()
    await expect(dialog).to_contain_text("1,200 rows of dataset baseline deleted")
    await expect(dialog).to_contain_text("It can be undone until")
    assert await unlabelled(page) == []
    await dialog.get_by_label("Reason (optional, recorded in the audit trail)").fill("two columns were swapped")
    await screenshot(page, "undo-confirm")
    assert await rows_of(db, wrong) == 1200  # the dry run wrote nothing

    await dialog.get_by_role("button", name="Undo the job").click()
    card = page.locator(".job")
    await expect(card.locator(".state")).to_have_text("Undone")
    await expect(card).to_contain_text("1,200 rows rolled back")
    await expect(page.get_by_role("cell", name="two columns were swapped")).to_be_visible()  # the history
    assert "Undone" in await seen(page, "states")
    assert await rows_of(db, wrong) == 0 and await rows_of(db, kept) == 300
    await expect(page.get_by_role("button", name=re.compile("^Undo"))).to_be_hidden()
    assert page.js_errors == []


async def test_a_bulk_pause_of_the_filtered_selection_names_the_jobs_and_kinds_then_pauses_them(
    serve, aiohttp_client, open_page, db
):
    server = await serve(max_imports_per_org=3, job_lease_seconds=30.0)
    api = await aiohttp_client(server)
    done = await start_import(api, make_csv(10), dataset="finished")
    await wait_for_state(api, done["id"], "completed")
    imports = [await start_import(api, make_csv(20_000), dataset=f"month{i}", batch_size=10) for i in (1, 2)]
    teams = await post_teams(api, sheet(team_rows(3000, members=1)), batch_size=1)
    running = [*imports, teams]
    for job in running:
        await wait_for(
            api, job["id"], lambda j: j["state"] == "running" and j["progress"].get("processed", 0) > 0, what="running"
        )

    page = await open_page(str(server.make_url("/#/jobs?state=running")))
    await expect(page.locator(".job")).to_have_count(3)
    assert await unlabelled(page) == []
    await page.get_by_label("Select all jobs matching the filter").check()
    await expect(page.locator(".bulk")).to_contain_text("every job matching the filter")
    await page.get_by_role("button", name="Pause the selected jobs").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading", name="Pause 3 jobs?")).to_be_visible()
    await expect(dialog).to_contain_text("3 jobs will be paused: 2 imports, 1 teams job.")
    await screenshot(page, "bulk-confirm")
    await dialog.get_by_role("button", name="Pause 3 jobs").click()
    await expect(page.get_by_role("status").filter(has_text="Pause: 3 jobs paused")).to_be_visible()
    for job in running:
        await wait_for_state(api, job["id"], "paused")
    assert (await get_job(api, done["id"]))["state"] == "completed"  # outside the filter

    # Resume one of them by its checkbox.
    await page.goto(str(server.make_url("/#/jobs?state=paused")))
    await expect(page.locator(".job")).to_have_count(3)
    await page.get_by_label("Select month1 ← upload.csv").check()
    await expect(page.locator(".bulk")).to_contain_text("1 job selected")
    await page.get_by_role("button", name="Resume the selected jobs").click()
    await expect(page.get_by_role("dialog")).to_contain_text("1 job will be resumed: 1 import.")
    await page.get_by_role("dialog").get_by_role("button", name="Resume 1 job").click()
    await wait_for_state(api, imports[0]["id"], "running", "completed")
    assert {(await get_job(api, j["id"]))["state"] for j in (imports[1], teams)} == {"paused"}
    assert page.js_errors == []

    resp = await api.post("/api/v1/jobs/terminate", json={"filter": {"ids": [j["id"] for j in running]}})
    assert resp.status == 200
    for job in running:
        await wait_for_state(api, job["id"], "terminated", timeout=180)

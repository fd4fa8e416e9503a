"""What a person sees is true and tells them what to do (issue 27), in a real
Chromium: a failing rollback's attempts, error and held slot on the card and
the job page; a queued job's reason; history on a running job; the import
form's types from the dataset's history; the export preview."""

from __future__ import annotations

import re

from playwright.async_api import expect

from ..integration.people import people, swap, to_csv
from ..support.helpers import control, make_csv, start_import, wait_for, wait_for_state
from .conftest import screenshot, unlabelled

TYPES = "age:int,visited:date"


async def import_history(api, seeds=(1, 2, 3)) -> None:
    for seed in seeds:
        job = await start_import(api, to_csv(people(seed)), types=TYPES)
        assert (await wait_for_state(api, job["id"], "completed", "failed"))["state"] == "completed"


async def test_a_failing_rollback_shows_its_attempts_error_and_held_slot_and_a_queued_job_says_why(
    serve, aiohttp_client, open_page
):
    server = await serve(faults=frozenset({"import.rollback"}), rollback_give_up_seconds=25.0)
    api = await aiohttp_client(server)
    await import_history(api)
    guarded = await start_import(api, to_csv(swap(people(4), "name", "phone")), guard="pause", types=TYPES)
    await wait_for_state(api, guarded["id"], "paused")
    await control(api, guarded["id"], "terminate")
    await wait_for(api, guarded["id"], lambda j: (j.get("rollback") or {}).get("attempts", 0) >= 1, what="a failed attempt")
    waiting = await start_import(api, to_csv(people(5)), types=TYPES)

    page = await open_page(str(server.make_url("/#/jobs")))
    card = page.locator(f'.job[data-job-id="{guarded["id"]}"]')
    await expect(card.locator(".rollback-status")).to_contain_text(re.compile(r"Rollback attempt \d+ failed: .*injected fault"))
    await expect(card.locator(".rollback-status")).to_contain_text("holds the org's import slot")
    queued = page.locator(f'.job[data-job-id="{waiting["id"]}"]')
    await expect(queued.locator(".queue-text")).to_contain_text(
        f"Waiting: the org's import slot is held by job {guarded['id']} (rolling back) · 1st of 1 in the org's import queue"
    )
    await expect(card.locator(".when time").first).to_be_visible()  # when the job was created, on the card
    await screenshot(page, "jobs-rollback-failing")

    await page.goto(str(server.make_url(f"/#/jobs/{guarded['id']}")))
    section = page.locator(".rollback-section")
    await expect(section.get_by_role("heading", name="Rollback")).to_be_visible()
    await expect(section).to_contain_text("injected fault")
    await expect(section).to_contain_text("Failing without progress since")
    await expect(section).to_contain_text(re.compile(r"Attempts\s*\d+"))
    await expect(section).to_contain_text("Held until the rollback succeeds")
    await expect(page.locator("main")).not_to_contain_text("resume to import anyway")
    await expect(page.get_by_role("button", name=re.compile("^Resume"))).to_be_hidden()
    assert await unlabelled(page) == []
    await screenshot(page, "job-rollback-failing")

    # After ROLLBACK_GIVE_UP_SECONDS without progress the slot is released and
    # the page says so; the rollback keeps trying, and the queued import starts.
    await expect(section).to_contain_text("Released", timeout=90_000)
    await wait_for_state(api, waiting["id"], "completed", timeout=90)
    assert page.js_errors == []


async def test_the_job_page_keeps_its_history_while_the_job_is_live(server, api, open_page):
    job = await start_import(api, make_csv(200_000), batch_size=50)
    await wait_for(api, job["id"], lambda j: j["progress"].get("processed", 0) > 0, what="rows")
    resp = await api.post(f"/api/v1/jobs/{job['id']}/pause", json={"reason": "checking the totals"})
    assert resp.status == 200
    await wait_for_state(api, job["id"], "paused")
    await control(api, job["id"], "resume")

    page = await open_page(str(server.make_url(f"/#/jobs/{job['id']}")))
    history = page.locator("section", has=page.get_by_role("heading", name="History"))
    await expect(history.get_by_role("cell", name="checking the totals")).to_be_visible()
    stats = page.locator(".job .stats")
    first = await stats.text_content()
    await expect(stats).not_to_have_text(first or "")  # live updates have arrived
    await expect(history.get_by_role("cell", name="checking the totals")).to_be_visible()
    await page.get_by_role("button", name=re.compile("^Pause")).click()
    await expect(history.get_by_role("cell", name="Pause", exact=True)).to_have_count(2)  # read again on the change of state
    await control(api, job["id"], "terminate")
    assert page.js_errors == []


async def test_the_import_form_types_columns_from_the_datasets_history_and_guards_with_pause(server, api, open_page, tmp_path):
    await import_history(api)
    path = tmp_path / "people.csv"
    path.write_bytes(to_csv(people(6)))
    page = await open_page(str(server.make_url("/#/new/import")))
    await page.get_by_label("CSV file").set_input_files(path)
    await expect(page.get_by_label("Dataset")).to_have_value("people")
    await expect(page.get_by_label("age", exact=True)).to_have_value("int")
    await expect(page.get_by_label("visited", exact=True)).to_have_value("date")
    await expect(page.get_by_label("name", exact=True)).to_have_value("string")
    await expect(page.locator(".types .hint")).to_contain_text("from the dataset's latest import")
    await expect(page.get_by_label("Guard")).to_have_value("pause")
    # The dataset field's pattern is valid in Chromium, so its check is on.
    name_ok = "(v) => { const i = document.getElementById('import-dataset'); const was = i.value; i.value = v; const ok = i.checkValidity(); i.value = was; return ok; }"
    assert await page.evaluate(name_ok, "-bad name") is False
    assert await page.evaluate(name_ok, "good_name-2") is True
    await page.locator("details summary").click()
    await screenshot(page, "import-types-from-history")

    # A new dataset: no history, so the dry run's findings type the columns.
    await page.get_by_label("Dataset").fill("fresh")
    await page.get_by_label("Dataset").dispatch_event("change")
    await expect(page.get_by_label("age", exact=True)).to_have_value("string")
    await page.get_by_role("button", name="Check first").click()
    await expect(page.get_by_role("heading", name="Dry run: nothing was written")).to_be_visible()
    await expect(page.get_by_label("age", exact=True)).to_have_value("int")
    await expect(page.get_by_label("visited", exact=True)).to_have_value("date")
    await expect(page.locator(".types .hint")).to_contain_text("from the dry run")
    # No raw labels or literal backticks in the report.
    await expect(page.locator(".report")).not_to_contain_text("types_auto")
    await expect(page.locator(".report")).not_to_contain_text("`")
    assert page.js_errors == []


async def test_the_export_preview_shows_the_count_first_rows_and_estimates(server, api, open_page):
    job = await start_import(api, make_csv(3000), dataset="visits", types="id:int,day:date")
    await wait_for_state(api, job["id"], "completed")
    page = await open_page(str(server.make_url("/#/new/export")))
    await page.get_by_label("Dataset").fill("visits")
    await page.get_by_label("Dataset").dispatch_event("change")
    await expect(page.get_by_label("Date column")).to_have_value("day")
    await page.get_by_label("From (included)").fill("2017-03-01")
    await page.get_by_label("To (not included)").fill("2017-05-01")
    await page.get_by_label("Fields").fill("id, day")
    await page.get_by_role("button", name="Preview").click()
    preview = page.locator(".export-preview")
    await expect(preview).to_contain_text("500 rows in range")
    await expect(preview.get_by_role("cell", name="2017-03-03")).to_be_visible()  # row 2, as a date
    await expect(preview).to_contain_text("About")
    assert await unlabelled(page) == []
    await screenshot(page, "export-preview")
    assert page.js_errors == []


async def test_an_undo_waiting_for_its_orgs_slot_says_why_on_its_card(server, api, open_page):
    done = await start_import(api, make_csv(200), dataset="first")
    await wait_for_state(api, done["id"], "completed")
    holder = await start_import(api, make_csv(50_000), batch_size=100, dataset="second")
    await wait_for(api, holder["id"], lambda j: j["progress"].get("processed", 0) > 0, what="rows")
    await control(api, holder["id"], "pause")
    await wait_for_state(api, holder["id"], "paused")
    assert (await api.post(f"/api/v1/jobs/{done['id']}/undo")).status == 200

    page = await open_page(str(server.make_url("/#/jobs")))
    card = page.locator(f'.job[data-job-id="{done["id"]}"]')
    await expect(card.locator(".queue-text")).to_contain_text(
        f"Waiting: the undo waits for the org's import slot, held by job {holder['id']} (paused)"
    )
    await screenshot(page, "jobs-undo-waiting")
    assert await card.locator(".queue-text").is_visible(), "a live update took the reason away"
    await control(api, holder["id"], "terminate")
    await wait_for_state(api, done["id"], "undone")
    assert page.js_errors == []


async def test_an_export_job_page_says_how_many_imports_it_reads_and_as_of_when(api, server, open_page):
    """The export keeps a count and a time, not the list of its imports'
    ids (issue 21): its page says so in words."""
    await import_history(api, seeds=(1, 2))
    resp = await api.post("/api/v1/jobs/export", json={"dataset": "people"})
    export = await resp.json()
    assert resp.status == 202, export
    await wait_for_state(api, export["id"], "completed")
    page = await open_page(str(server.make_url(f"/#/jobs/{export['id']}")))
    params = page.locator("dl.params")
    await expect(params).to_contain_text(re.compile(r"Imports read\s*2 imports finished by \w+ \d"))
    await expect(params).not_to_contain_text("imports_as_of")
    await expect(params).not_to_contain_text("imports_digest")
    await screenshot(page, "job-export")

"""The support user's story in the browser: upload a baseline through the page,
watch it, pause it, resume it; terminate another and see it rolled back."""

from __future__ import annotations

import asyncio
import re
import time

from playwright.async_api import expect

from ..support.helpers import get_job, make_csv, start_import, wait_for, wait_for_state
from .conftest import screenshot, seen, unlabelled

ROWS = 50_000
BAD_LINES = (101, 2_502, 40_003)  # file lines (header = 1) whose id is not an int


def baseline_csv() -> bytes:
    lines = make_csv(ROWS).decode().splitlines()
    for line in BAD_LINES:
        lines[line - 1] = lines[line - 1].replace(lines[line - 1].split(",")[0], "n/a", 1)
    return ("\n".join(lines) + "\n").encode()


async def records(db, job_id: str) -> int:
    return await db.records.count_documents({"job_id": job_id})


async def bar_value(page) -> float:
    return float(await page.locator(".job .bar").get_attribute("aria-valuenow") or 0)


async def test_a_50000_row_upload_through_the_page_pauses_holds_still_resumes_and_completes(server, open_page, db, tmp_path):
    path = tmp_path / "baseline.csv"
    path.write_bytes(baseline_csv())
    page = await open_page(str(server.make_url("/#/new/import")))

    await page.get_by_label("CSV file").set_input_files(path)
    await expect(page.get_by_label("id", exact=True)).to_be_visible()  # the header, read in the page
    await expect(page.get_by_label("Dataset")).to_have_value("baseline")
    await page.get_by_label("id", exact=True).select_option("int")
    await page.get_by_label("day", exact=True).select_option("date")
    await page.get_by_text("More options").click()
    await page.get_by_label("Batch size").fill("100")  # slow enough to pause mid-way
    await page.get_by_label("Batch size").blur()
    assert await unlabelled(page) == []
    await screenshot(page, "import-form")
    await page.get_by_role("button", name="Start").click()

    await expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]{24}$"))
    job_id = page.url.rsplit("/", 1)[1]
    sent, of = (await seen(page, "upload"))[-1].split(" of ")
    assert sent == of == "1.7 MB", "the upload bar reached the whole file"
    job = await db.jobs.find_one({"_id": job_id})
    assert job["params"]["types"] == {"id": "int", "day": "date"} and job["params"]["batch_size"] == 100
    await expect(page.locator(".job-title")).to_have_text("baseline ← baseline.csv")

    # The bar moves.
    await expect(page.locator(".job .bar")).to_have_attribute("aria-valuenow", re.compile(r"^(?!0(\.0)?$)"))
    first = await bar_value(page)
    deadline = time.monotonic() + 60
    while await bar_value(page) <= first:
        assert time.monotonic() < deadline, "the bar did not move"
        await asyncio.sleep(0.05)
    await expect(page.locator(".job .stats")).to_contain_text(re.compile(r"rows/s · ETA \d"))

    await page.get_by_role("button", name=re.compile("^Pause")).click()
    await expect(page.locator(".job .state")).to_have_text("Paused")
    states = await seen(page, "states")
    assert states.index("Pausing…") < states.index("Paused") and states[-1] == "Paused", states
    await expect(page.get_by_role("button", name=re.compile("^Resume"))).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("^Pause"))).to_be_hidden()
    await expect(page.locator(".job .stats")).not_to_contain_text("rows/s")

    # Paused means the database's row count stands still.
    stopped_at = await records(db, job_id)
    assert 0 < stopped_at < ROWS - len(BAD_LINES)
    watch_until = time.monotonic() + 2
    while time.monotonic() < watch_until:
        assert await records(db, job_id) == stopped_at
        await asyncio.sleep(0.2)
    shown = int(re.match(r"([\d,]+) of", await page.locator(".job .stats").inner_text()).group(1).replace(",", ""))
    assert shown == stopped_at + sum(1 for line in BAD_LINES if line - 1 <= shown)

    await page.get_by_role("button", name=re.compile("^Resume")).click()
    await expect(page.locator(".job .state")).to_have_text("Completed")
    assert await records(db, job_id) == ROWS - len(BAD_LINES)
    await expect(page.locator(".job .stats")).to_contain_text("50,000 of 50,000 rows · 100.0% · 3 row errors")
    errors = page.get_by_role("table").filter(has_text="Line")
    for line in BAD_LINES:
        await expect(errors.get_by_role("row").filter(has_text=str(line)).first).to_contain_text("id")
    assert page.js_errors == []
    await screenshot(page, "job")


async def test_terminating_an_import_from_the_list_shows_the_rollback_and_leaves_no_rows(server, api, open_page, db):
    small = await start_import(api, make_csv(500), dataset="visits", types="day:date")
    await wait_for_state(api, small["id"], "completed")
    big = await start_import(api, make_csv(ROWS), dataset="baseline", batch_size=100)
    fixed = await start_import(api, make_csv(300), dataset="baseline")  # waits for the slot
    await wait_for(api, big["id"], lambda j: j["progress"].get("processed", 0) > 0, what="rows")

    page = await open_page(str(server.make_url("/")))
    card = page.locator(f'.job[data-job-id="{big["id"]}"]')
    await expect(card.locator(".stats")).to_contain_text("rows/s")
    await expect(page.locator(f'.job[data-job-id="{fixed["id"]}"] .state')).to_have_text("Queued")
    assert await unlabelled(page) == []
    await screenshot(page, "jobs")
    # Readable on a narrow window: one column, nothing wider than the screen.
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await expect(card.get_by_role("button", name=re.compile("^Pause"))).to_be_in_viewport()
    await screenshot(page, "jobs-narrow")
    await page.set_viewport_size({"width": 1280, "height": 860})

    # By keyboard: the Terminate button, then the dialog's reason, Tab, Tab, Enter.
    await card.get_by_role("button", name=re.compile("^Terminate")).focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("everything it wrote is rolled back")
    await dialog.get_by_label("Reason").fill("columns swapped")
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="Terminate and roll back")).to_be_focused()
    await page.keyboard.press("Enter")

    await expect(card.locator(".state")).to_have_text("Terminated")
    states = await seen(page, "states")
    assert "Rolling back…" in states, states
    final = await get_job(api, big["id"])
    # The page shows the service's count (a delete whose answer was lost to a
    # database timeout and retried is not counted twice, nor at all).
    await expect(card.locator(".rollback-text")).to_have_text(f"{final['progress']['rolled_back']:,} rows rolled back")
    assert final["progress"]["inserted"] > 0
    assert await records(db, big["id"]) == 0
    for name in ("Pause", "Resume", "Terminate"):
        await expect(card.get_by_role("button", name=re.compile(f"^{name}"))).to_be_hidden()

    # The corrected upload, queued behind it, runs once the rollback is done.
    await expect(page.locator(f'.job[data-job-id="{fixed["id"]}"] .state')).to_have_text("Completed")
    assert await records(db, fixed["id"]) == 300

    # Filters, kept in the address; focus stays on the filter that changed.
    await page.get_by_label("State").focus()
    await page.get_by_label("State").select_option("completed")
    await expect(page).to_have_url(re.compile(r"#/jobs\?state=completed$"))
    await expect(page.locator(".job")).to_have_count(2)
    await expect(page.get_by_label("State")).to_be_focused()
    await page.get_by_label("Kind").select_option("export")
    await expect(page.get_by_text("No jobs match these filters.")).to_be_visible()
    await page.get_by_label("State").select_option("terminated")
    await page.get_by_label("Kind").select_option("import")
    await expect(page.locator(".job")).to_have_count(1)
    await expect(page.locator(f'.job[data-job-id="{big["id"]}"]')).to_be_visible()
    assert page.js_errors == []

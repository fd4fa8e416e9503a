"""The pipeline operator's story in the browser: an export with a date range
saved by the browser holds exactly the rows asked for, and a streamed
download terminated from the jobs list fails in the browser."""

from __future__ import annotations

import csv
import io
import re

from playwright.async_api import expect

from ..support.helpers import get_job, make_csv, start_import, wait_for_state
from .conftest import unlabelled

N = 3000


def in_range(i: int) -> bool:
    """make_csv's day for row i is 2017-(i % 12 + 1)-(i % 28 + 1): March and April here."""
    return (i % 12) + 1 in (3, 4)


EXPECTED = [["id", "day"]] + [[str(i), f"2017-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}"] for i in range(1, N + 1) if in_range(i)]


async def saved_csv(download) -> list[list[str]]:
    assert await download.failure() is None
    data = (await download.path()).read_bytes()
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


async def fill_export_form(page) -> None:
    await page.get_by_label("Dataset").fill("visits")
    await page.get_by_label("Dataset").dispatch_event("change")
    await expect(page.get_by_label("Date column")).to_have_value("day")  # the only date column, from the imports
    await page.get_by_label("From (included)").fill("2017-03-01")
    await page.get_by_label("To (not included)").fill("2017-05-01")
    await page.get_by_label("Fields").fill("id, day")


async def test_an_export_with_a_date_range_downloaded_by_the_browser_holds_exactly_the_rows_in_range(server, api, open_page):
    imported = await start_import(api, make_csv(N), dataset="visits", types="id:int,day:date")
    await wait_for_state(api, imported["id"], "completed")
    page = await open_page(str(server.make_url("/#/new/export")))

    assert await unlabelled(page) == []
    await fill_export_form(page)
    async with page.expect_download() as streamed:
        await page.get_by_role("button", name="Download now").click()
    download = await streamed.value
    assert download.suggested_filename == "visits.csv"
    assert await saved_csv(download) == EXPECTED
    await expect(page.get_by_role("status").filter(has_text="The download has started")).to_be_visible()

    # The same range in the background, then the stored file from the job's page.
    await fill_export_form(page)
    await page.get_by_role("button", name="Run in background").click()
    await expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]{24}$"))
    await expect(page.locator(".job .state")).to_have_text("Completed")
    async with page.expect_download() as stored:
        await page.get_by_role("button", name="Download visits.csv").click()
    assert await saved_csv(await stored.value) == EXPECTED
    assert page.js_errors == []


async def test_terminating_a_streamed_download_from_the_list_makes_the_browser_download_fail(server, api, open_page):
    rows = 20_000
    imported = await start_import(api, make_csv(rows), dataset="visits", types="id:int,day:date")
    await wait_for_state(api, imported["id"], "completed")
    page = await open_page(str(server.make_url("/#/new/export")))
    await page.get_by_label("Dataset").fill("visits")

    async with page.expect_download() as streamed:
        await page.get_by_role("button", name="Download now").click()
    download = await streamed.value
    await page.get_by_role("link", name="see it in the jobs list").click()
    card = page.locator(".job").filter(has_text="visits (download)")
    # Paused first, so the download cannot finish before the terminate lands.
    await card.get_by_role("button", name=re.compile("^Pause")).click()
    await expect(card.locator(".state")).to_have_text("Paused")
    await card.get_by_role("button", name=re.compile("^Terminate")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Terminate and roll back").click()

    await expect(card.locator(".state")).to_have_text("Terminated")
    assert await download.failure() is not None, "the browser must report the download as failed"
    job = await get_job(api, await card.get_attribute("data-job-id"))
    assert job["state"] == "terminated" and job["progress"]["processed"] < rows
    assert page.js_errors == []

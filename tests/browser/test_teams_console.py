"""The dashboard user's story: a sheet whose phone column slid ten rows is
caught by "Check first" in the page, before anything is written."""

from __future__ import annotations

from playwright.async_api import expect

from service.store.teams import user_id

from ..support.helpers import manager_phone, sheet, shift_down, snapshot, team_rows
from .conftest import screenshot, unlabelled

ORG = "default"


async def test_the_dry_run_of_a_sheet_with_a_slid_phone_column_shows_the_shift_before_anything_is_written(
    server, open_page, db, tmp_path
):
    await db.users.insert_many(
        [
            {"_id": user_id(ORG, manager_phone(i)), "org_id": ORG, "phone": manager_phone(i), "name": f"Manager {i}"}
            for i in range(1, 61)
        ]
    )
    before = await snapshot(db)
    path = tmp_path / "teams.csv"
    path.write_bytes(sheet(shift_down(team_rows(60, members=1), column=2, by=10)))
    page = await open_page(str(server.make_url("/#/new/teams")))

    assert await unlabelled(page) == []
    await page.get_by_label("CSV file").set_input_files(path)
    await page.get_by_role("button", name="Check first").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Shift warning")
    await expect(alert).to_contain_text("manager_phone looks shifted down by 10 rows")
    await expect(alert).to_contain_text("Nothing has been written")
    await expect(page.get_by_role("heading", name="Dry run: nothing was written")).to_be_focused()
    report = page.locator(".report")
    await expect(report).to_contain_text("70 (50 valid)")
    await expect(report.get_by_role("heading", name="Warnings: 50")).to_be_visible()
    await expect(report).to_contain_text("phone_owner_mismatch: 50")
    warning = report.get_by_role(
        "cell", name="manager_phone +12015550001 belongs to the existing user 'Manager 1', not 'Manager 11'"
    )
    await expect(warning).to_be_hidden()  # folded until asked for
    await report.get_by_text("Show all 50").click()
    await expect(warning).to_be_visible()
    await report.get_by_text("Show all 50").click()
    await expect(report.get_by_role("heading", name="Row errors: 20")).to_be_visible()
    await screenshot(page, "teams-dry-run")

    assert await snapshot(db) == before
    assert await db.jobs.count_documents({}) == 0
    assert await db.db["uploads.files"].count_documents({}) == 0
    assert page.js_errors == []

"""Finding 4: a header cell is a cell. An operator imports a file whose header
names a spreadsheet formula; the export (a viewer downloads it) neutralises it
like a data cell when neutralisation is on, and leaves it as it was when off."""

from __future__ import annotations

import csv
import io

from ..support.helpers import wait_for_state
from .conftest import imported

FORMULA = "=cmd|' /C calc'!A0"


def first_row(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


async def test_a_formula_in_the_header_row_is_neutralised_in_exports(orgs):
    sheet = io.StringIO()
    csv.writer(sheet).writerows([[FORMULA, "name", "+sum"], ["1", "a", "x"]])
    await imported(orgs.operator_a, sheet.getvalue().encode(), dataset="evil")

    resp = await orgs.operator_a.post("/api/v1/jobs/export", json={"dataset": "evil"})
    assert resp.status == 202, await resp.text()
    job = await wait_for_state(orgs.operator_a, (await resp.json())["id"], "completed")
    result = await orgs.viewer.get(f"/api/v1/jobs/{job['id']}/result")
    assert first_row(await result.text()) == ["'" + FORMULA, "name", "'+sum"]

    streamed = await orgs.operator_a.post("/api/v1/exports/evil.csv")
    assert first_row(await streamed.text())[0] == "'" + FORMULA

    raw = await orgs.operator_a.post("/api/v1/exports/evil.csv", params={"neutralize_formulas": "false"})
    assert first_row(await raw.text()) == [FORMULA, "name", "+sum"]

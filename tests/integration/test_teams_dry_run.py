"""POST /api/v1/jobs/teams?dry_run=true: every row checked, nothing written."""

from __future__ import annotations

import aiohttp

from service.store.teams import user_id

from ..support.helpers import manager_phone, post_teams, sheet, shift_down, snapshot, team_rows

ORG = "default"


async def seed_managers(db, count: int) -> None:
    await db.users.insert_many(
        [
            {"_id": user_id(ORG, manager_phone(i)), "org_id": ORG, "phone": manager_phone(i), "name": f"Manager {i}"}
            for i in range(1, count + 1)
        ]
    )


async def everything(db) -> dict:
    state = await snapshot(db)
    for name in ("undo_log", "jobs", "job_progress", "uploads.files", "uploads.chunks"):
        state[name] = await db.db[name].find().to_list(None)
    return state


async def test_a_sheet_whose_phones_slid_ten_rows_is_reported_as_shifted_and_nothing_is_written(client, db):
    await seed_managers(db, 60)
    before = await everything(db)
    shifted = shift_down(team_rows(60, members=1), column=2, by=10)

    review = await post_teams(client, sheet(shifted), expect=200, dry_run="true")

    assert await everything(db) == before
    shift = review["shift"]
    assert shift["suspected"] is True
    assert (shift["column"], shift["direction"], shift["rows"]) == ("manager_phone", "down", 10)
    assert "shifted down by 10 rows" in shift["message"]
    assert "50 have that user as the manager_name 10 rows above" in shift["message"]
    assert "the first 10 rows have no manager_phone and the last 10 rows have a phone" in shift["message"]
    assert review["rows"] == 70 and review["valid_rows"] == 50
    assert review["errors"]["by_kind"] == {"invalid_phone": 10, "missing_team": 10}
    assert review["warnings"]["by_kind"] == {"phone_owner_mismatch": 50}
    first_warning = review["warnings"]["first"][0]
    assert first_warning["line"] == 12
    assert first_warning["message"] == ("manager_phone +12015550001 belongs to the existing user 'Manager 1', not 'Manager 11'")
    preview = review["preview"]
    assert len(preview) == 20
    assert preview[0]["line"] == 2 and preview[0]["error"]["kind"] == "invalid_phone"
    assert preview[10] == {
        "line": 12,
        "team": "Team 11",
        "manager": {"name": "Manager 11", "phone": "+12015550001"},
        "members": 1,
        "phone_owner": "Manager 1",
    }


async def test_a_correct_sheet_has_no_warnings_and_says_what_it_would_create(client, db):
    await seed_managers(db, 30)
    before = await everything(db)

    review = await post_teams(client, sheet(team_rows(30)), expect=200, dry_run="true")

    assert await everything(db) == before
    assert review["shift"] == {"suspected": False}
    assert review["warnings"]["count"] == 0 and review["errors"]["count"] == 0
    assert review["valid_rows"] == 30
    assert review["would_create"] == {"teams": 30, "users": 60}
    assert review["would_change"] == {"users": 30}
    assert review["preview"][0] == {
        "line": 2,
        "team": "Team 1",
        "manager": {"name": "Manager 1", "phone": "+12015550001"},
        "members": 2,
    }


async def test_swapped_or_repeated_values_are_warned_about_by_kind(client, db):
    rows = [
        ["Team A", "+1 201 555 0101", "201-555-0102", ""],  # name and phone swapped
        ["Team B", "Ann", "Ann Smith", ""],  # a name in the phone column
        ["Team C", "Carl", "201-555-0103", ""],
        ["Team D", "Carl", "201-555-0103", ""],  # the same manager twice
        ["Team E", "Dora", "201-555-0104", "201-555-0103"],  # members = another row's manager
    ]

    review = await post_teams(client, sheet(rows), expect=200, dry_run="true")

    assert review["warnings"]["by_kind"] == {
        "name_looks_like_phone": 1,
        "phone_looks_like_name": 1,
        "manager_of_several_teams": 1,
        "members_equal_manager": 1,
    }
    by_line = {w["line"]: w for w in review["warnings"]["first"]}
    assert by_line[2]["kind"] == "name_looks_like_phone"
    assert by_line[3]["kind"] == "phone_looks_like_name"
    assert by_line[4]["message"] == "+12015550103 is the manager of 2 teams (lines 4, 5)"
    assert by_line[6]["message"] == "the members of line 6 are exactly the manager of line 4"
    assert review["errors"]["by_kind"] == {"invalid_phone": 1}
    assert review["shift"] == {"suspected": False}


async def test_a_dry_run_catches_team_names_taken_in_the_org_or_the_file(client, db):
    await db.teams.insert_one({"_id": "default/team 2", "org_id": ORG, "name": "Team 2"})
    rows = team_rows(3) + [["team 1", "X", "201-555-0999", ""]]

    review = await post_teams(client, sheet(rows), expect=200, dry_run="true")

    errors = {e["line"]: e for e in review["errors"]["first"]}
    assert errors[3]["kind"] == "team_exists" and "already exists" in errors[3]["message"]
    assert errors[5]["kind"] == "team_exists" and "line 2" in errors[5]["message"]
    assert review["valid_rows"] == 2


async def test_dry_run_bad_bodies_are_clear_errors(make_client, db):
    client = await make_client(max_upload_bytes=4096)
    for body, status in ((b"", 400), (b"team,manager_name,manager_phone\n", 400), (sheet(team_rows(200)), 413)):
        resp = await client.post(
            "/api/v1/jobs/teams", params={"dry_run": "true"}, data=body, headers={"Content-Type": "text/csv"}
        )
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/problem+json"

    big = sheet(team_rows(200))

    async def chunked():  # no Content-Length: the limit is enforced while reading
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    resp = await client.post(
        "/api/v1/jobs/teams", params={"dry_run": "true"}, data=chunked(), headers={"Content-Type": "text/csv"}
    )
    assert resp.status == 413, await resp.text()
    assert await db.jobs.count_documents({}) == 0

    # A dry run checks every parameter the job would take: a typo is not ignored.
    for params in ({"on_error": "later"}, {"max_errors": "-1"}, {"batch_size": "0"}):
        resp = await client.post(
            "/api/v1/jobs/teams",
            params={"dry_run": "true", **params},
            data=sheet(team_rows(2)),
            headers={"Content-Type": "text/csv"},
        )
        assert resp.status == 400 and resp.content_type == "application/problem+json", await resp.text()
        assert (await resp.json())["parameter"] == next(iter(params))


async def test_a_dry_run_accepts_the_sheet_as_a_multipart_file_field(client, db):
    form = aiohttp.FormData()
    form.add_field("file", sheet(team_rows(3)), filename="teams.csv", content_type="text/csv")
    resp = await client.post("/api/v1/jobs/teams", params={"dry_run": "true"}, data=form)
    review = await resp.json()
    assert resp.status == 200, review
    assert review["valid_rows"] == 3 and review["would_create"]["teams"] == 3

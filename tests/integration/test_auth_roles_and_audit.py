"""Roles (viewer, operator, admin, support) and the audit trail, through the real
app with authentication on."""

from __future__ import annotations

import datetime as dt

from ..support.authkit import ORG_A, As
from ..support.helpers import control, get_job, make_csv, start_import, wait_for_state, wait_until_processed


async def test_a_viewer_reads_but_cannot_create_or_control_jobs(auth_client, idp_key):
    operator = As(auth_client, idp_key.mint("olga", roles=["operator"]))
    viewer = As(auth_client, idp_key.mint("vera", roles=["viewer"]))
    job = await start_import(operator, make_csv(50))
    assert (await get_job(viewer, job["id"]))["id"] == job["id"]
    body = await start_import(viewer, make_csv(5), expect=403)
    assert body["required_role"] == "operator" and "operator" in body["detail"]
    body = await control(viewer, job["id"], "terminate", expect=403)
    assert body["required_role"] == "operator"
    resp = await viewer.post("/api/v1/jobs/export", json={"dataset": "people"})
    assert resp.status == 403
    await wait_for_state(operator, job["id"], "completed")
    assert len((await (await viewer.get("/api/v1/jobs")).json())["jobs"]) == 1


async def test_an_operator_cannot_manage_keys_or_read_the_audit_log(auth_client, idp_key):
    operator = As(auth_client, idp_key.mint("olga", roles=["operator"]))
    for method, path, kwargs in [
        ("POST", "/api/v1/api-keys", {"json": {"name": "x", "role": "viewer"}}),
        ("GET", "/api/v1/api-keys", {}),
        ("DELETE", "/api/v1/api-keys/0123456789abcdef01234567", {}),
        ("GET", "/api/v1/audit", {}),
    ]:
        resp = await operator.request(method, path, **kwargs)
        body = await resp.json(content_type=None)
        assert resp.status == 403 and body["required_role"] == "admin", (method, path, body)


async def test_a_pause_with_a_reason_and_a_terminate_by_another_actor_are_in_history_and_audit(auth_client, idp_key):
    alice = As(auth_client, idp_key.mint("alice", roles=["operator"], name="Alice"))
    bob = As(auth_client, idp_key.mint("bob", roles=["operator"], name="Bob"))
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    job = await start_import(alice, make_csv(20_000), batch_size=100)
    await wait_until_processed(alice, job["id"], 100)
    resp = await alice.post(f"/api/v1/jobs/{job['id']}/pause", json={"reason": "columns swapped"})
    assert resp.status == 200, await resp.text()
    paused_as = (await resp.json())["state"]
    await wait_for_state(alice, job["id"], "paused")
    await control(bob, job["id"], "terminate")
    await wait_for_state(bob, job["id"], "terminated")

    seen = await get_job(bob, job["id"])
    assert seen["created_by"] == {"actor": "alice", "actor_name": "Alice", "method": "jwt"}
    history = [(e["action"], e["actor"], e["state_before"], e["state_after"], e["reason"]) for e in seen["history"]]
    assert history == [
        ("job.create", "alice", None, "queued", None),
        ("job.pause", "alice", "running", paused_as, "columns swapped"),
        ("job.terminate", "bob", "paused", "terminating", None),
    ]
    assert all(e["org_id"] == ORG_A and e["job_id"] == job["id"] for e in seen["history"])

    resp = await admin.get("/api/v1/audit", params={"job_id": job["id"]})
    events = (await resp.json())["events"]
    assert [e["action"] for e in events] == ["job.terminate", "job.pause", "job.create"]  # newest first
    assert [e["actor_name"] for e in events] == ["Bob", "Alice", "Alice"]
    by_bob = (await (await admin.get("/api/v1/audit", params={"actor": "bob"})).json())["events"]
    assert [(e["action"], e["state_before"], e["state_after"]) for e in by_bob] == [("job.terminate", "paused", "terminating")]
    pauses = (await (await admin.get("/api/v1/audit", params={"action": "job.pause"})).json())["events"]
    assert [e["reason"] for e in pauses] == ["columns swapped"]


async def test_audit_pages_newest_first_and_filters_by_time(auth_client, idp_key):
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    created = []
    for i in range(5):
        resp = await admin.post("/api/v1/api-keys", json={"name": f"key {i}", "role": "viewer"})
        created.append((await resp.json())["id"])
    seen, url = [], "/api/v1/audit?limit=2"
    while url:
        page = await (await admin.get(url)).json()
        assert len(page["events"]) <= 2
        seen += page["events"]
        url = page["next"]
    assert [e["key_id"] for e in seen] == created[::-1]
    assert all(e["action"] == "api_key.create" for e in seen)
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).isoformat()
    assert (await (await admin.get("/api/v1/audit", params={"since": later})).json())["events"] == []
    earlier = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    assert len((await (await admin.get("/api/v1/audit", params={"since": earlier})).json())["events"]) == 5
    for bad in ({"since": "yesterday"}, {"action": "job.explode"}, {"before": "nope"}, {"limit": "0"}, {"colour": "x"}):
        resp = await admin.get("/api/v1/audit", params=bad)
        assert resp.status == 400, bad


async def test_a_request_that_changes_nothing_records_nothing(auth_client, idp_key):
    alice = As(auth_client, idp_key.mint("alice", roles=["admin"]))
    done = await start_import(alice, make_csv(10))
    await wait_for_state(alice, done["id"], "completed")
    await control(alice, done["id"], "pause", expect=409)
    assert [e["action"] for e in (await get_job(alice, done["id"]))["history"]] == ["job.create"]

    job = await start_import(alice, make_csv(20_000), batch_size=100)
    await wait_until_processed(alice, job["id"], 100)
    await control(alice, job["id"], "pause")
    await wait_for_state(alice, job["id"], "paused")
    await control(alice, job["id"], "pause")  # already paused: 200, nothing new
    await control(alice, job["id"], "terminate")
    history = (await get_job(alice, job["id"]))["history"]
    assert [e["action"] for e in history] == ["job.create", "job.pause", "job.terminate"]
    await wait_for_state(alice, job["id"], "terminated")


async def test_a_control_body_other_than_a_reason_is_400(auth_client, idp_key):
    alice = As(auth_client, idp_key.mint("alice", roles=["operator"]))
    job = await start_import(alice, make_csv(10))
    for kwargs in (
        {"json": {"reason": 5}},
        {"json": {"why": "x"}},
        {"json": ["x"]},
        {"data": b"{", "headers": {"Content-Type": "application/json"}},
    ):
        resp = await alice.post(f"/api/v1/jobs/{job['id']}/terminate", **kwargs)
        assert resp.status == 400, (kwargs, await resp.text())
    await wait_for_state(alice, job["id"], "completed")


async def test_support_acts_in_the_named_org_and_is_audited_with_both(auth_client, idp_key):
    alice = As(auth_client, idp_key.mint("alice", roles=["operator"]))
    support = As(
        auth_client, idp_key.mint("sam", org="platform", roles=["collect-jobs:support"], name="Sam (support)"), org=ORG_A
    )
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    job = await start_import(alice, make_csv(20_000), batch_size=100)
    await wait_until_processed(alice, job["id"], 100)

    me = await (await support.get("/api/v1/me")).json()
    assert (me["org_id"], me["actor"], me["role"], me["support"], me["home_org"]) == (ORG_A, "sam", "operator", True, "platform")
    resp = await support.post(f"/api/v1/jobs/{job['id']}/terminate", json={"reason": "customer asked on ticket 4411"})
    assert resp.status == 200, await resp.text()
    await wait_for_state(alice, job["id"], "terminated")
    # Support has an operator's rights in the org, not an admin's.
    assert (await support.get("/api/v1/api-keys")).status == 403

    events = (await (await admin.get("/api/v1/audit", params={"actor": "sam"})).json())["events"]
    assert len(events) == 1
    event = events[0]
    assert (event["org_id"], event["actor"], event["support"], event["home_org"], event["action"]) == (
        ORG_A,
        "sam",
        True,
        "platform",
        "job.terminate",
    )
    assert event["reason"] == "customer asked on ticket 4411"
    # Without the support role, naming another org is refused; naming your own is fine.
    other = As(auth_client, idp_key.mint("alice", roles=["admin"]), org="org-b")
    assert (await other.get("/api/v1/jobs")).status == 403
    own = As(auth_client, idp_key.mint("alice", roles=["admin"]), org=ORG_A)
    assert (await own.get("/api/v1/jobs")).status == 200
    # Support without X-Org-Id has no org to act in.
    alone = As(auth_client, idp_key.mint("sam", org=None, roles=["collect-jobs:support"]))
    resp = await alone.get("/api/v1/jobs")
    assert resp.status == 403 and "X-Org-Id" in (await resp.json())["detail"]

"""Finding 6: an org that queues many jobs does not take the slots others
wait for. Background exports have a per-org limit (MAX_EXPORTS_PER_ORG) like
every kind, and admission takes turns between orgs: the org holding the
fewest running jobs goes first, then the one admitted least recently."""

from __future__ import annotations

import asyncio

from ..support.helpers import get_job, make_csv, wait_for_state
from .conftest import imported


async def queue_export(caller, **spec) -> str:
    resp = await caller.post("/api/v1/jobs/export", json={"dataset": "people", **spec})
    assert resp.status == 202, await resp.text()
    return (await resp.json())["id"]


async def test_an_org_that_queued_six_exports_does_not_win_the_slot_another_org_waits_for(orgs_with):
    orgs = await orgs_with(max_running_jobs=1)
    await imported(orgs.operator_a)
    await imported(orgs.operator_b)
    flood = [await queue_export(orgs.operator_a) for _ in range(6)]
    single = await queue_export(orgs.operator_b)
    for job_id in [*flood, single]:
        await wait_for_state(orgs.operator_a if job_id != single else orgs.operator_b, job_id, "completed")
    started_a = sorted([(await get_job(orgs.operator_a, j))["started_at"] for j in flood])
    b = await get_job(orgs.operator_b, single)
    # Org B's one export starts right after the export of org A's that was
    # running or admitted when it was queued, not after all of A's left: at
    # most one of A's starts between B's queueing and B's start.
    overtook = [s for s in started_a if b["created_at"] < s < b["started_at"]]
    assert len(overtook) <= 1, (b["created_at"], b["started_at"], started_a)


async def test_background_exports_have_a_per_org_limit(orgs_with):
    orgs = await orgs_with(max_running_jobs=4, max_exports_per_org=1)
    await imported(orgs.operator_a, make_csv(2000))
    await imported(orgs.operator_b)
    jobs = [await queue_export(orgs.operator_a, batch_size=10) for _ in range(3)]
    other = await queue_export(orgs.operator_b)
    most = 0
    while True:
        states = [(await get_job(orgs.operator_a, j))["state"] for j in jobs]
        most = max(most, sum(s == "running" for s in states))
        if all(s == "completed" for s in states):
            break
        await asyncio.sleep(0.02)
    assert most == 1, most
    # The limit is per org: org B's export ran beside org A's.
    assert (await wait_for_state(orgs.operator_b, other, "completed"))["state"] == "completed"

"""docs/add-a-kind.md stays true: its example kind, executed from the page,
runs, pauses, resumes, completes, and is terminated and rolled back through
the real engine on the real database."""

from __future__ import annotations

import re
from pathlib import Path

from service.jobs.runner import Kind

from .conftest import create_job, wait_job

PAGE = Path(__file__).resolve().parents[2] / "docs" / "add-a-kind.md"


def example_kind() -> Kind:
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert code, "docs/add-a-kind.md has no python block"
    namespace: dict = {}
    exec(compile(code.group(1), str(PAGE), "exec"), namespace)
    return namespace["KIND"]


async def test_the_guides_example_kind_runs_pauses_resumes_and_completes(db, replicas):
    replica = await replicas({"counter": example_kind()})
    job_id = await create_job(replica, "counter", {"dataset": "ds", "rows": 20_000})
    await wait_job(db, job_id, lambda j: j["state"] == "running", "running")
    await replica.manager.control("org-a", job_id, "pause")
    await wait_job(db, job_id, lambda j: j["state"] == "paused", "paused")
    written = await db.records.count_documents({"job_id": job_id})
    assert 0 < written < 20_000
    assert await db.records.count_documents({"job_id": job_id}) == written, "a paused job writes nothing"
    await replica.manager.control("org-a", job_id, "resume")
    await wait_job(db, job_id, lambda j: j["state"] == "completed", "completed", timeout=120)
    assert await db.records.count_documents({"job_id": job_id}) == 20_000


async def test_the_guides_example_kind_is_terminated_and_rolled_back_leaving_nothing(db, replicas):
    replica = await replicas({"counter": example_kind()})
    job_id = await create_job(replica, "counter", {"dataset": "ds", "rows": 20_000})
    await wait_job(db, job_id, lambda j: j["state"] == "running", "running")
    await replica.manager.control("org-a", job_id, "terminate")
    await wait_job(db, job_id, lambda j: j["state"] == "terminated", "terminated", timeout=120)
    assert await db.records.count_documents({"job_id": job_id}) == 0

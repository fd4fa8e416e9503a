"""The HTTP API of the service processes, as a test drives it."""

from __future__ import annotations

import asyncio
import io
import signal
import time

from ..support.procs import ServiceProcess

# DB_TIMEOUT_SECONDS: FerretDB's scans can take long on a busy machine; the
# tests are about fencing and hand-over, not about the operation deadline.
FAST = {"JOB_POLL_SECONDS": "0.5", "JOB_LEASE_SECONDS": "6", "SHUTDOWN_GRACE_SECONDS": "5", "DB_TIMEOUT_SECONDS": "120"}


class Api:
    """The HTTP API of whichever replica is named."""

    def __init__(self, http) -> None:
        self.http = http

    async def start_import(self, proc: ServiceProcess, body: bytes, **params) -> dict:
        params = {"dataset": "people", **{k: str(v) for k, v in params.items()}}
        async with self.http.post(
            f"{proc.url}/api/v1/jobs/import", params=params, data=io.BytesIO(body), headers={"Content-Type": "text/csv"}
        ) as resp:
            assert resp.status == 202, await resp.text()
            return await resp.json()

    async def start_teams(self, proc: ServiceProcess, body: bytes, **params) -> dict:
        async with self.http.post(
            f"{proc.url}/api/v1/jobs/teams",
            params={k: str(v) for k, v in params.items()},
            data=io.BytesIO(body),
            headers={"Content-Type": "text/csv"},
        ) as resp:
            assert resp.status == 202, await resp.text()
            return await resp.json()

    async def job(self, proc: ServiceProcess, job_id: str) -> dict:
        async with self.http.get(f"{proc.url}/api/v1/jobs/{job_id}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def control(self, proc: ServiceProcess, job_id: str, action: str) -> dict:
        async with self.http.post(f"{proc.url}/api/v1/jobs/{job_id}/{action}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def wait(self, proc, job_id, predicate, what="condition", timeout=120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(proc, job_id)
            if predicate(job):
                return job
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {job['state']} {job['progress']}"
            await asyncio.sleep(0.05)

    async def kill_owner_mid_rollback(self, owner: ServiceProcess, survivor: ServiceProcess, job_id: str, under_way) -> dict:
        """Terminates the job through ``survivor``, kill -9s its owner once
        ``under_way(job)`` shows the rollback partly done, and waits for the
        survivor to finish the rollback."""
        await self.control(survivor, job_id, "terminate")
        await self.wait(survivor, job_id, lambda j: j["state"] == "terminating" and under_way(j), "a rollback under way", 300)
        owner.signal(signal.SIGKILL)
        owner.wait(10)
        return await self.wait(survivor, job_id, lambda j: j["state"] == "terminated", "the rollback", timeout=300)

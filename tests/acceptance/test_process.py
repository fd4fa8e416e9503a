"""The service as a process: configuration, probes, a whole import, SIGTERM."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import time

from ..support.devdb import ROOT
from ..support.helpers import make_csv
from ..support.procs import exits_within


def test_a_bad_setting_stops_the_process_at_once_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "PORT must be an integer, got 'eighty'" in result.stderr


async def poll_job(http, url: str, job_id: str, *states: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(f"{url}/api/v1/jobs/{job_id}") as resp:
            job = await resp.json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['state']}"
        await asyncio.sleep(0.05)


async def test_the_process_serves_probes_and_a_whole_import_then_stops_on_sigterm(spawn, http):
    proc = spawn()
    async with http.get(f"{proc.url}/healthz") as resp:
        assert resp.status == 200
    async with http.get(f"{proc.url}/readyz") as resp:
        assert resp.status == 200

    async with http.post(
        f"{proc.url}/api/v1/jobs/import",
        params={"dataset": "accept", "types": "id:int"},
        data=io.BytesIO(make_csv(5000)),
        headers={"Content-Type": "text/csv"},
    ) as resp:
        assert resp.status == 202
        job = await resp.json()
    done = await poll_job(http, proc.url, job["id"], "completed", "failed")
    assert done["state"] == "completed" and done["progress"]["inserted"] == 5000

    proc.signal(signal.SIGTERM)
    code, took = exits_within(proc, 20)
    assert code == 0
    assert took < 20

"""Fair admission benchmark (issue 23). Run: .venv/bin/python bench/fairness_bench.py [--flood N]

Two replicas (real `python -m service` processes, authentication on: each
org is a JWT of its own) share one database. 20 orgs each import a small
dataset; then org-00 queues N background exports (100 by default) at once,
and right after, each of the 19 other orgs queues one. Reported: each org's
time from queueing its first export to that export starting (the job's
created_at to started_at, both the service's clocks), and when the flooding
org's last export started.

Admission takes turns between orgs (the org running the fewest jobs first,
then the one admitted least recently) and an org holds at most
MAX_EXPORTS_PER_ORG background exports at once: with S process slots in all
and exports taking T seconds each, every other org's first export starts
within ceil(19 / (S - MAX_EXPORTS_PER_ORG)) + 1 rounds of T plus two ticks,
however many jobs the flooding org queued (see report()). T is the measured
median export time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import RESULTS, BenchDatabase, ServiceProcess, machine, seconds_between, wait_job, write_results

from tests.support.authkit import AUDIENCE, ISSUER, PEPPER, SigningKey
from tests.support.helpers import make_csv

ORGS = 20
REPLICAS = 2
RUNNING_PER_REPLICA = 2
EXPORTS_PER_ORG = 1
ROWS = 2000
POLL = 0.2


def org_name(i: int) -> str:
    return f"org-{i:02d}"


async def queue_export(http: aiohttp.ClientSession, url: str, token: str) -> dict:
    async with http.post(
        f"{url}/api/v1/jobs/export", json={"dataset": "sales"}, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 202, body
        return body


async def get(http: aiohttp.ClientSession, url: str, token: str, job_id: str) -> dict:
    async with http.get(f"{url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}) as resp:
        return await resp.json()


async def main(flood: int) -> None:
    server = BenchDatabase().start()
    uri = server.uri("fairness")
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    key = SigningKey.rsa("bench")
    auth = {
        "AUTH_JWT_PUBLIC_KEY": key.public_pem(),
        "AUTH_JWT_ISSUER": ISSUER,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
        "AUTH_API_KEY_PEPPER": PEPPER,
    }
    env = {
        **auth,
        "LOG_LEVEL": "WARNING",
        "MAX_RUNNING_JOBS": str(RUNNING_PER_REPLICA),
        "MAX_EXPORTS_PER_ORG": str(EXPORTS_PER_ORG),
        "MAX_QUEUED_PER_ORG": str(max(100, flood)),
        "JOB_POLL_SECONDS": "0.5",
        "JOB_WORKERS": "1",
    }
    replicas = [ServiceProcess(uri, logs, f"fair-{i}", **env).start() for i in range(REPLICAS)]
    tokens = {org_name(i): key.mint(f"ops-{i}", org=org_name(i), roles=["operator"]) for i in range(ORGS)}
    urls = [r.url for r in replicas]
    results: dict = {"machine": machine(server), "orgs": ORGS, "replicas": REPLICAS, "flood": flood}
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            body = make_csv(ROWS)
            for i, (org, token) in enumerate(tokens.items()):  # noqa: B007 (the count is read after the loop)
                async with http.post(
                    f"{urls[i % REPLICAS]}/api/v1/jobs/import",
                    params={"dataset": "sales"},
                    data=body,
                    headers={"Content-Type": "text/csv", "Authorization": f"Bearer {token}"},
                ) as resp:
                    job = await resp.json()
                    assert resp.status == 202, job
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as as_org:
                    await wait_job(as_org, urls[0], job["id"], lambda j: j["state"] == "completed", timeout=300)
            print(f"{ORGS} datasets imported", file=sys.stderr)

            flooder, others = org_name(0), [org_name(i) for i in range(1, ORGS)]
            began = time.monotonic()
            sem = asyncio.Semaphore(8)

            async def one(org: str, n: int) -> dict:
                async with sem:
                    return await queue_export(http, urls[n % REPLICAS], tokens[org])

            flood_jobs = await asyncio.gather(*(one(flooder, n) for n in range(flood)))
            other_jobs = await asyncio.gather(*(one(org, n) for n, org in enumerate(others)))
            queued_in = time.monotonic() - began
            # Until every other org's export has finished; then the flood's
            # exports are looked at once, and those left are terminated (the
            # rest of the flood would only drain, one at a time).
            final: dict[str, dict] = {}
            while len(final) < len(others):
                for org, job in zip(others, other_jobs):
                    if job["id"] not in final:
                        current = await get(http, urls[0], tokens[org], job["id"])
                        if current["state"] in ("completed", "failed", "terminated"):
                            final[job["id"]] = {**current, "org": org}
                await asyncio.sleep(POLL)
            total = time.monotonic() - began
            for job in flood_jobs:
                current = await get(http, urls[0], tokens[flooder], job["id"])
                final[job["id"]] = {**current, "org": flooder}
                if current["state"] in ("queued", "running"):
                    async with http.post(
                        f"{urls[0]}/api/v1/jobs/{job['id']}/terminate", headers={"Authorization": f"Bearer {tokens[flooder]}"}
                    ) as resp:
                        await resp.read()
    finally:
        for r in replicas:
            r.stop()
        server.close()

    jobs = [j for j in final.values() if j["started_at"]]
    assert all(j["state"] == "completed" for j in final.values() if j["org"] != flooder)
    first_start = {}
    for org in [org_name(i) for i in range(ORGS)]:
        # From the org's first export queued to its first export started (any of them).
        queued_at = min(j["created_at"] for j in final.values() if j["org"] == org)
        started_at = min(j["started_at"] for j in jobs if j["org"] == org)
        first_start[org] = round(seconds_between(queued_at, started_at), 2)
    durations = [seconds_between(j["started_at"], j["finished_at"]) for j in jobs if j["state"] == "completed"]
    other_waits = [first_start[o] for o in others]
    flood_starts = sorted(j["started_at"] for j in jobs if j["org"] == flooder)
    last_other_start = max(j["started_at"] for j in jobs if j["org"] != flooder)
    results.update(
        first_start_seconds=first_start,
        export_seconds_median=round(statistics.median(durations), 3),
        slots=REPLICAS * RUNNING_PER_REPLICA,
        max_exports_per_org=EXPORTS_PER_ORG,
        job_poll_seconds=float(env["JOB_POLL_SECONDS"]),
        rows=ROWS,
        others_max=max(other_waits),
        others_median=statistics.median(other_waits),
        flood_started_before_last_other=sum(1 for s in flood_starts if s < last_other_start),
        queued_in_seconds=round(queued_in, 2),
        total_seconds=round(total, 1),
    )
    markdown = report(results)
    write_results("fairness", results, markdown)
    print(markdown)


def report(r: dict) -> str:
    """The README's table. A round is one export plus up to two ticks (a freed
    slot is seen at the next tick, and admission's reads take about one more
    on a busy server); while the other orgs wait, each round gives the
    flooding org at most its MAX_EXPORTS_PER_ORG and the others the rest of
    the slots, so every other org's first export starts within
    ceil(19 / (slots - limit)) + 1 rounds, however many the flood queued."""
    others = r["orgs"] - 1
    rounds = math.ceil(others / (r["slots"] - r["max_exports_per_org"])) + 1
    round_seconds = r["export_seconds_median"] + 2 * r["job_poll_seconds"]
    bound = rounds * round_seconds
    flood_bound = rounds * r["max_exports_per_org"]
    mark = lambda good: "✅" if good else "❌"  # noqa: E731
    return f"""
Fair admission ({r["orgs"]} orgs, {r["replicas"]} replicas of `MAX_RUNNING_JOBS={r["slots"] // r["replicas"]}`,
`MAX_EXPORTS_PER_ORG={r["max_exports_per_org"]}`, `JOB_POLL_SECONDS={r["job_poll_seconds"]:g}`; org-00 queues
{r["flood"]} exports of {r["rows"]} rows, then each other org queues one; {r["machine"]};
`bench/fairness_bench.py`; {r["total_seconds"]:g} s from the first export queued to the others' last finished):

| | measured | bound |
|---|---|---|
| org-00 (queued {r["flood"]}): queueing to its first export starting | {r["first_start_seconds"]["org-00"]} s | |
| each of the 19 others: queueing to its export starting, median / max | {r["others_median"]} s / {r["others_max"]} s | {bound:.1f} s: {rounds} rounds of an export ({r["export_seconds_median"]:.2f} s, median) and two ticks {mark(r["others_max"] <= bound)} |
| org-00's exports started before the last other org's | {r["flood_started_before_last_other"]} of {r["flood"]} | {flood_bound} (one per round) {mark(r["flood_started_before_last_other"] <= flood_bound)} |
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=100)
    parser.add_argument("--report-only", action="store_true", help="rewrite the README's table from bench/results/fairness.json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "fairness.json").read_text())
        write_results("fairness", saved, report(saved))
    else:
        asyncio.run(main(args.flood))

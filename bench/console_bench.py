"""The browser console's first view and page weight, in a real Chromium.
Run: .venv/bin/python bench/console_bench.py [--jobs N] [--rounds N]

Starts a real `python -m service` process (auth disabled, on a local FerretDB
or MONGODB_URI), gives it N finished import jobs, and loads `/` in Debian's
Chromium driven by Playwright: cold (a new browser profile each time, nothing
cached) and warm (the same profile again: the page revalidated, its assets
from the cache). "First view" is the browser's own clock from the start of
navigation to the moment the jobs list shows every job. The weight counts
the console's files (HTML, CSS, JavaScript) as sent, and the API's JSON
separately. Writes the README's bench:console block.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import aiohttp
from common import BenchDatabase, ServiceProcess, done, machine, ok, upload, wait_job, write_results
from playwright.async_api import async_playwright

from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS  # common put the project on sys.path

TARGET_MS = 1000
TARGET_BYTES = 200 * 1024


async def seed(url: str, jobs: int, folder: Path) -> None:
    path = folder / "small.csv"
    path.write_text("id,name,day\n" + "".join(f"{i},name {i},2017-01-{i % 28 + 1:02d}\n" for i in range(1, 201)))
    async with aiohttp.ClientSession() as http:
        for n in range(jobs):
            job = await upload(http, url, path, dataset=f"set{n % 4}", types="id:int,day:date")
            await wait_job(http, url, job["id"], done)


async def load(context, url: str, jobs: int) -> tuple[float, int, int]:
    """One load of the console: (ms to the full list, console bytes, API bytes)."""
    sizes = {"console": 0, "api": 0}
    pending = []

    async def count(response) -> None:
        # What crossed the network: a cached or revalidated file adds no body.
        sent = (await response.request.sizes())["responseBodySize"]
        sizes["api" if "/api/" in response.url else "console"] += max(0, sent)

    page = await context.new_page()
    page.on("response", lambda r: pending.append(asyncio.ensure_future(count(r))))
    await page.goto(url)
    await page.locator(".job").nth(jobs - 1).wait_for()
    ms = await page.evaluate("performance.now()")
    await asyncio.gather(*pending)
    await page.close()
    return ms, sizes["console"], sizes["api"]


async def main(jobs: int, rounds: int) -> None:
    database = BenchDatabase().start()
    described = machine(database)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        proc = ServiceProcess(database.uri("console"), Path(tmp), "console", AUTH_DISABLED="true").start()
        try:
            await seed(proc.url, jobs, Path(tmp))
            cold, warm = [], []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for _ in range(rounds):
                    context = await browser.new_context(viewport={"width": 1280, "height": 860})
                    cold.append(await load(context, f"{proc.url}/", jobs))
                    warm.append(await load(context, f"{proc.url}/", jobs))
                    await context.close()
                await browser.close()
        finally:
            proc.stop()
            database.close()

    load_after = os.getloadavg()[0]
    cold_ms = statistics.median(r[0] for r in cold)
    warm_ms = statistics.median(r[0] for r in warm)
    weight = cold[0][1]
    results = {
        "machine": described,
        "jobs": jobs,
        "rounds": rounds,
        "load_average": [load_before, load_after],
        "cold_ms": [round(r[0], 1) for r in cold],
        "warm_ms": [round(r[0], 1) for r in warm],
        "console_bytes": weight,
        "api_bytes_first_view": cold[0][2],
        "warm_console_bytes": warm[0][1],
    }
    markdown = f"""
Measured by `bench/console_bench.py` on {described}; Chromium (Debian) headless, driven by Playwright;
{jobs} finished jobs in the list, {rounds} rounds; the machine's load average was {load_before:.1f} before
and {load_after:.1f} after (other work shares its 2 cores, which is most of the spread).

| measure | result | target |
|---|---|---|
| first view, cold (new profile: nothing cached), navigation start → all {jobs} jobs shown | median {cold_ms:.0f} ms ({", ".join(f"{r[0]:.0f}" for r in cold)}) | < {TARGET_MS} ms {ok(cold_ms < TARGET_MS)} |
| first view, warm (assets from the cache, the page revalidated) | median {warm_ms:.0f} ms | < {TARGET_MS} ms {ok(warm_ms < TARGET_MS)} |
| console files sent on a cold load (HTML, CSS, JavaScript; uncompressed) | {weight / 1024:.1f} KB | < 200 KB {ok(weight < TARGET_BYTES)} |
| console files sent on a warm load (the page revalidated: 304; assets from the cache) | {warm[0][1] / 1024:.1f} KB | — |
| API JSON of the first view (`/api/v1/me`, one page of jobs, their events) | {cold[0][2] / 1024:.1f} KB | — |
"""
    write_results("console", results, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))

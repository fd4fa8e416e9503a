"""One chaos run: start the cluster, run the plan, settle, check, summarise.

python bench/chaos.py --seed 7 --duration 90 [--markdown out.md] [--keep-logs DIR]
python bench/chaos.py --replay schedule.json      (a schedule printed or saved by an earlier run)
python bench/chaos.py --seed 7 --duration 90 --print-schedule   (the schedule only; nothing runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from pymongo import AsyncMongoClient

from .checks import Checker
from .cluster import Cluster
from .driver import Driver, Violation
from .plan import Plan, generate


@dataclass
class Result:
    plan: Plan
    seconds: float
    counts: dict[str, int]
    jobs: Counter  # (kind, final state) -> n
    violations: list[Violation]
    notes: list[str] = field(default_factory=list)
    log_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def table(self) -> list[tuple[str, str, str]]:
        """(section, item, count) rows of the summary."""
        rows: list[tuple[str, str, str]] = []
        for (kind, state), n in sorted(self.jobs.items()):
            rows.append(("jobs", f"{kind} {state}", str(n)))
        for key, n in sorted(self.counts.items()):
            section, _, item = key.partition(".")
            if section in ("control", "fault", "work", "check"):
                rows.append(
                    ({"work": "work scheduled"}.get(section, section + "s" if section != "check" else "checks"), item, str(n))
                )
        by_invariant = Counter(v.invariant for v in self.violations)
        rows.append(("violations", "total", str(len(self.violations))))
        rows += [("violations", name, str(n)) for name, n in sorted(by_invariant.items())]
        return rows

    def summary(self) -> str:
        rows = self.table()
        width = max(len(f"{s} / {i}") for s, i, _ in rows)
        lines = [f"chaos run: seed {self.plan.seed}, {self.plan.duration:g} s of faults, {self.seconds:.0f} s in all"]
        lines += [f"  {(s + ' / ' + i).ljust(width)}  {n:>6}" for s, i, n in rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"## Chaos run: seed {self.plan.seed}, {self.plan.duration:g} s\n", "| what | item | count |", "|---|---|---:|"]
        out += [f"| {s} | {i} | {n} |" for s, i, n in self.table()]
        if self.violations:
            out += ["", "### Violations", ""] + [f"- `{v.invariant}` job `{v.job}`: {v.detail}" for v in self.violations]
        if self.notes:
            out += ["", "### Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def failure_report(self) -> str:
        first = self.violations[0]
        return "\n".join(
            [
                f"CHAOS RUN FAILED: seed {self.plan.seed}, duration {self.plan.duration:g} s "
                f"(replay: python bench/chaos.py --replay {self.log_dir}/schedule.json)",
                f"first violated invariant: {first.describe()}",
                *(f"also: {v.describe()}" for v in self.violations[1:10]),
                f"replica and database logs, schedule.json (for --replay): {self.log_dir}",
                self.plan.describe(),
            ]
        )


async def run(plan: Plan, log_dir: Path, log=print) -> Result:
    started = time.monotonic()
    (log_dir / "schedule.json").write_text(plan.to_json())
    cluster = Cluster(log_dir)
    log(plan.describe())
    driver = Driver(plan, cluster, log)
    try:
        await cluster.start()
    except BaseException:
        await cluster.close()
        raise
    log(
        f"cluster up in {time.monotonic() - started:.1f} s: database {cluster.name} on {cluster.db.uri}, replicas "
        + ", ".join(f"{n} {p.url}" for n, p in cluster.replicas.items())
    )
    try:
        async with aiohttp.ClientSession() as http:
            await driver.run(http)
            checking = time.monotonic()
            async with AsyncMongoClient(cluster.uri, serverSelectionTimeoutMS=60_000) as client:
                checker = Checker(driver, cluster, client.get_default_database())
                await checker.run()
            log(
                f"{driver.now():7.2f}s checked in {time.monotonic() - checking:.1f} s: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in checker.timings.items())
            )
        crashed = cluster.exited_unexpectedly()
        violations = driver.violations + checker.violations
        violations += crashes(cluster)
        violations += [
            Violation("replica-alive", None, f"replica {n} exited by itself", [cluster.replicas[n].log()[-2000:]])
            for n in crashed
        ]
        jobs = Counter((j.kind, checker.final[j.id]["state"]) for j in driver.by_id.values() if j.id in checker.final)
        jobs.update((j.kind, j.create) for j in driver.jobs.values() if j.id is None)
        result = Result(plan, time.monotonic() - started, driver.counts, jobs, violations, checker.notes, log_dir)
        (log_dir / "summary.md").write_text(result.markdown())
        if not result.ok:
            (log_dir / "failure.txt").write_text(result.failure_report())
        return result
    finally:
        if driver.mongo is not None:
            await driver.mongo.close()
        await cluster.close()
        if cluster.db.log.exists():
            shutil.copy(cluster.db.log, log_dir / "ferretdb.log")


def crashes(cluster: Cluster) -> list[Violation]:
    """A job that "crashed" (an exception the runner did not expect: an internal
    error, whatever the job's final state) is a bug; one violation per job."""
    found: dict[str, Violation] = {}
    for name, proc in cluster.replicas.items():
        for line in proc.log().splitlines():
            if '"level": "ERROR"' not in line or "crashed" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            job_id = entry.get("job_id")
            if job_id not in found:
                last = (entry.get("exception") or "").strip().splitlines()[-1:] or [""]
                found[job_id] = Violation(
                    "no-internal-error",
                    job_id,
                    f"{entry.get('message')} on {name}: {last[0]}",
                    [{k: entry.get(k) for k in ("time", "kind", "state", "exception")}],
                )
    return list(found.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python bench/chaos.py", description="A seeded chaos run of three replicas with invariant checks."
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=90, help="seconds of work and faults (then the run settles and checks)")
    p.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="fault lanes: 1 (one fault at a time, CI's runs) or more (the database's own lane plus lanes of replica faults that overlap)",
    )
    p.add_argument("--replay", type=Path, help="a schedule saved as JSON (--save-schedule); overrides --seed/--duration")
    p.add_argument("--save-schedule", type=Path, help="write the schedule as JSON here")
    p.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    p.add_argument("--markdown", type=Path, help="write the summary as markdown here")
    p.add_argument("--keep-logs", type=Path, help="keep the replicas' logs in this directory")
    args = p.parse_args(argv)
    plan = Plan.from_json(args.replay.read_text()) if args.replay else generate(args.seed, args.duration, args.lanes)
    if args.save_schedule:
        args.save_schedule.write_text(plan.to_json())
    if args.print_schedule:
        print(plan.describe())
        return 0
    log_dir = args.keep_logs or Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(plan, log_dir))
    print(result.summary())
    if args.markdown:
        args.markdown.write_text(result.markdown())
    if not result.ok:
        print(result.failure_report(), file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    return 0

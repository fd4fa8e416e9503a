"""The invariants, checked once every job has settled. Each check appends
Violations with the documents involved; none stops at the first.

- imports: a completed import holds exactly its good rows, once each, under
  the ids of their row numbers, with the data of the file;
- nothing left: a terminated job left no records, teams, tagged users, undo
  entries, export file or upload; a completed one no upload or undo entry;
  no record or team belongs to a job that did not complete; no GridFS chunk
  lacks its file and no upload lacks its job;
- teams: teams and users equal the model of the completed teams jobs;
- exports: a completed background export's result (downloaded through the
  API) is byte for byte the checker's rendering of the imports it names;
  a streamed one that ended cleanly is too, and ended cleanly only if the
  job completed; a client that left ends its job terminated;
- 5xx: none but 503, and 503 only while the database was away (and a grace
  period after) or from a replica shutting down;
- (during the run, in driver.py) shown-paused-wrote, and (settling) stuck.

Exports are compared byte for byte: the data are text and integers whose
rendering is fixed (RFC 4180 quoting by the csv module, CRLF, a leading
quote on formula cells), so there is nothing a robust comparison would have
to forgive."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from typing import Any

import aiohttp
from bson import ObjectId

from .cluster import Cluster
from .driver import Driver, Job, Violation
from .expect import TeamsModel, export_csv, user_id
from .inputs import HEADERS, ImportInput, TeamsInput

SHUTDOWN_SLACK = 2.0


class Checker:
    def __init__(self, driver: Driver, cluster: Cluster, db) -> None:
        """``db``: a connection of the checker's own, without the driver's short
        deadlines (FerretDB scans a whole collection per read)."""
        self.driver = driver
        self.cluster = cluster
        self.db = db
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.final: dict[str, dict] = {}  # job id -> the API's view
        self.timings: dict[str, float] = {}
        self.docs: dict[str, list[dict]] = {}
        self.chunks: dict[str, dict[Any, int]] = {}
        self.rendered: dict[tuple, str] = {}  # (import, columns) -> its rows' CSV

    def fail(self, invariant: str, job: str | None, detail: str, *docs: Any) -> None:
        self.violations.append(Violation(invariant, job, detail, list(docs)))

    async def run(self) -> list[Violation]:
        for check in (self.load, self.imports, self.leftovers, self.teams, self.exports):
            started = time.monotonic()
            await check()
            self.timings[check.__name__] = time.monotonic() - started
        self.server_errors()
        return self.violations

    async def load(self) -> None:
        """The API's final view of every job, and one read of each collection the
        checks look at (FerretDB scans a collection per query: one scan each,
        then everything is checked in memory)."""
        for job in self.driver.by_id.values():
            status, body = await self.driver.call(self.driver.any_up(), "GET", f"/api/v1/jobs/{job.id}", job.org)
            if status == 200:
                self.final[job.id] = body  # type: ignore[index]
            else:
                self.fail("readable", job.id, f"GET /jobs/{job.id} answered {status} after settling")
        db = self.db
        self.records: dict[str, list[dict]] = defaultdict(list)
        # Unsorted, in replies of many documents: FerretDB sorts a whole
        # collection in memory (an hour's run holds about a million records);
        # the checker sorts each job's few thousand itself.
        async for doc in db["records"].find({}, {"created_at": 0}, batch_size=10_000):
            self.records[doc.get("job_id")].append(doc)
        for docs in self.records.values():
            docs.sort(key=lambda d: d["_id"])
        for name in ("teams", "users", "undo_log", "uploads.files", "exports.files"):
            self.docs[name] = sorted(await db[name].find({}).to_list(None), key=lambda d: str(d["_id"]))
        for bucket in ("uploads", "exports"):
            counts: dict[Any, int] = defaultdict(int)
            async for chunk in db[f"{bucket}.chunks"].find({}, {"files_id": 1}):
                counts[chunk.get("files_id")] += 1
            self.chunks[bucket] = counts
        self.job_ids = {d["_id"] async for d in db["jobs"].find({}, {"_id": 1})}
        # Indexed once by job (a run of an hour has thousands of jobs and tens of
        # thousands of documents: a scan per job would make the checks quadratic).
        self.by_job: dict[str, dict[Any, list[dict]]] = {}
        for name, docs in self.docs.items():
            index: dict[Any, list[dict]] = defaultdict(list)
            for d in docs:
                owners = {d.get("job_id"), (d.get("metadata") or {}).get("job_id")} - {None}
                if name == "undo_log":
                    owners.add(str(d["_id"]).partition(":")[0])
                for owner in owners:
                    index[owner].append(d)
            self.by_job[name] = index

    def jobs(self, kind: str, state: str | None = None) -> list[Job]:
        return [
            j
            for j in self.driver.by_id.values()
            if j.kind == kind and j.id in self.final and (state is None or self.final[j.id]["state"] == state)
        ]

    def state(self, job: Job) -> str:
        return self.final[job.id]["state"]  # type: ignore[index]

    # -- imports -----------------------------------------------------------

    async def imports(self) -> None:
        for job in self.jobs("import", "completed"):
            given = job.input
            if not isinstance(given, ImportInput):
                self.notes.append(f"import {job.id}: input unknown, rows not checked")
                continue
            docs = self.records.get(job.id, [])
            rows = [d.get("row") for d in docs]
            dupes = sorted(r for r, n in Counter(rows).items() if n > 1)
            if dupes:
                self.fail(
                    "import-rows-once",
                    job.id,
                    f"rows stored more than once: {dupes[:10]}",
                    *[d for d in docs if d.get("row") in dupes[:2]],
                )
            missing = sorted(set(given.good) - set(rows))
            extra = sorted(set(rows) - set(given.good))
            if missing or extra:
                self.fail(
                    "import-rows-exact",
                    job.id,
                    f"{len(docs)} records for {len(given.good)} good rows: "
                    f"missing rows {missing[:10]}, unexpected rows {extra[:10]}",
                    *[d for d in docs if d.get("row") in extra[:3]],
                )
            prefix = f"{job.org}/{job.args['dataset']}/{job.id}:"
            for doc in docs:
                row = doc.get("row")
                want = given.good.get(row)
                if (
                    doc["_id"] != f"{prefix}{row:010d}"
                    or doc.get("org_id") != job.org
                    or doc.get("dataset") != job.args["dataset"]
                ):
                    self.fail("import-row-identity", job.id, f"row {row} is stored under the wrong id or tags", doc)
                    break
                if want is not None and doc.get("data") != want:
                    self.fail(
                        "import-row-data",
                        job.id,
                        f"row {row} holds other data than the file's",
                        {"stored": doc.get("data"), "file": want},
                    )
                    break

    # -- leftovers ---------------------------------------------------------

    def tagged(self, collection: str, job_id: str) -> list[dict]:
        return self.by_job[collection].get(job_id, [])

    async def leftovers(self) -> None:
        for job in self.driver.by_id.values():
            if job.id not in self.final:
                continue
            state = self.state(job)
            # A completed teams job keeps its undo entries for its undo window
            # (JOB_UNDO_DAYS); any other final job has none left.
            undo = [d for d in self.by_job["undo_log"].get(job.id, []) if str(d["_id"]).startswith(f"{job.id}:")]
            if undo and not (state == "completed" and job.kind == "teams"):
                self.fail("left-nothing", job.id, f"{state} {job.kind} job left {len(undo)} undo entries", *undo)
            uploads = self.tagged("uploads.files", job.id)
            if uploads and state in ("completed", "terminated"):
                self.fail("left-nothing", job.id, f"{state} {job.kind} job left its upload", *uploads)
            if state != "terminated":
                continue
            if self.records.get(job.id):
                self.fail(
                    "left-nothing",
                    job.id,
                    f"terminated {job.kind} job left {len(self.records[job.id])} records",
                    *self.records[job.id],
                )
            for coll in ("teams", "exports.files"):
                docs = self.tagged(coll, job.id)
                if docs:
                    self.fail("left-nothing", job.id, f"terminated {job.kind} job left {len(docs)} of {coll}", *docs)
            file_id = (self.final[job.id].get("params") or {}).get("file_id")
            if job.kind == "export" and file_id and self.chunks["exports"].get(ObjectId(file_id)):
                self.fail(
                    "left-nothing",
                    job.id,
                    f"terminated export left {self.chunks['exports'][ObjectId(file_id)]} chunks of file {file_id}",
                )

        completed = {j.id for j in self.jobs("import", "completed")}
        for job_id, docs in self.records.items():
            # A failed (or stuck, already reported) import keeps its rows until
            # it is retried or terminated; only these may have none.
            if job_id not in completed and self.final.get(job_id, {}).get("state") in (None, "terminated", "queued"):
                self.fail(
                    "left-nothing",
                    job_id,
                    f"{len(docs)} records of a job that is not a completed import ({self.final.get(job_id, {}).get('state')})",
                    *docs,
                )
        teams_done = {j.id for j in self.jobs("teams", "completed")}
        for team in self.docs["teams"]:
            if team.get("job_id") not in teams_done:
                self.fail("left-nothing", team.get("job_id"), "a team of a job that did not complete", team)
        for upload in self.docs["uploads.files"]:
            if (upload.get("metadata") or {}).get("job_id") not in self.job_ids:
                self.fail(
                    "left-nothing", (upload.get("metadata") or {}).get("job_id"), "an upload whose job does not exist", upload
                )
        for bucket in ("uploads", "exports"):
            files = {d["_id"] for d in self.docs[f"{bucket}.files"]}
            orphans = {f: n for f, n in self.chunks[bucket].items() if f not in files}
            if orphans:
                self.fail("left-nothing", None, f"{bucket}.chunks of {len(orphans)} files that have no files document", orphans)

    # -- teams and users -----------------------------------------------------

    async def teams(self) -> None:
        by_org: dict[str, list[Job]] = defaultdict(list)
        for job in self.driver.by_id.values():
            if job.kind == "teams" and job.id in self.final:
                by_org[job.org].append(job)
        orgs = set(by_org) | {d["org_id"] for d in self.docs["teams"]} | {d["org_id"] for d in self.docs["users"]}
        for org in sorted(orgs):
            jobs = by_org.get(org, [])
            completed: dict[str, tuple[TeamsInput, set[int]]] = {}
            others: dict[str, TeamsInput] = {}
            for job in jobs:
                if not isinstance(job.input, TeamsInput):
                    self.notes.append(f"teams {job.id}: input unknown")
                    continue
                final = self.final[job.id]
                if final["state"] == "completed":
                    errors = {e["row"] for e in final.get("errors") or []}
                    if len(errors) != (final.get("progress") or {}).get("failed", len(errors)):
                        self.notes.append(
                            f"teams {job.id}: {len(errors)} distinct row errors kept, progress says {final['progress'].get('failed')}"
                        )
                    completed[job.id] = (job.input, errors)
                else:
                    others[job.id] = job.input
            model = TeamsModel.build(org, completed, others)
            for job_id, what, detail in model.problems:
                self.fail("teams-rows", job_id, f"{what}: {detail}")
            teams = {d["_id"]: d for d in self.docs["teams"] if d.get("org_id") == org}
            for tid, (job_id, row) in model.teams.items():
                doc = teams.get(tid)
                want = {
                    "job_id": job_id,
                    "row": row.row,
                    "name": " ".join(row.team.split()),
                    "manager_id": user_id(org, row.manager),
                    "member_ids": [user_id(org, m) for m in row.members],
                }
                got = {k: (doc or {}).get(k) for k in want}
                if doc is None:
                    self.fail("teams-model", job_id, f"team {tid!r} of completed row {row.row} does not exist", want)
                elif got != want:
                    self.fail(
                        "teams-model", job_id, f"team {tid!r} is not what row {row.row} says", {"stored": got, "model": want}
                    )
            for tid, doc in teams.items():
                if tid not in model.teams:
                    self.fail("teams-model", doc.get("job_id"), f"team {tid!r} exists but no completed job's row made it", doc)
            users = {d["_id"]: d for d in self.docs["users"] if d.get("org_id") == org}
            for uid, tids in model.users.items():
                doc = users.get(uid)
                if doc is None:
                    self.fail("users-model", None, f"user {uid!r} of teams {sorted(tids)} does not exist")
                    continue
                listed = doc.get("teams") or []
                if len(listed) != len(set(listed)) or set(listed) != tids:
                    self.fail(
                        "users-model",
                        doc.get("job_id"),
                        f"user {uid!r} lists other teams than the model",
                        {"stored": listed, "model": sorted(tids)},
                    )
                name = doc.get("name")
                if name is not None and name not in model.manager_names.get(uid, set()):
                    if name in model.any_names.get(uid, set()):
                        self.notes.append(f"user {uid}: keeps the name {name!r} given by a job that did not complete")
                    else:
                        self.fail("users-model", doc.get("job_id"), f"user {uid!r} is named {name!r}, a name no row gave it", doc)
            for uid, doc in users.items():
                if uid not in model.users:
                    self.fail("users-model", doc.get("job_id"), f"user {uid!r} exists but no surviving team names it", doc)

    # -- exports -------------------------------------------------------------

    def rendering(self, job: Job) -> bytes | None:
        params = self.final[job.id].get("params") or {}
        dataset = params.get("dataset") or job.args.get("dataset")
        imports = {j.id: j for j in self.jobs("import", "completed") if j.org == job.org and j.args.get("dataset") == dataset}
        named = params.get("jobs")
        if named is None:
            # The imports that had finished when it was created (the run
            # undoes nothing: a completed import stays completed).
            as_of = dt.datetime.fromisoformat(params["imports_as_of"])
            named = sorted(i for i in imports if dt.datetime.fromisoformat(self.final[i]["finished_at"]) <= as_of)
            if len(named) != params.get("imports"):
                self.fail(
                    "export-content",
                    job.id,
                    f"the export was created over {params.get('imports')} imports, but {len(named)} completed imports "
                    f"of {dataset!r} had finished by {params['imports_as_of']}",
                )
                return None
        strangers = [i for i in named if i not in imports]
        if strangers:
            self.fail(
                "export-content", job.id, f"the export reads imports that are not completed imports of {dataset!r}: {strangers}"
            )
            return None
        columns = params.get("columns")
        if columns != HEADERS[dataset]:
            self.fail("export-content", job.id, f"export columns {columns} are not the dataset's {HEADERS[dataset]}")
            return None
        given = [(i, imports[i].input) for i in named]
        if not all(isinstance(g, ImportInput) for _, g in given):
            return None
        return export_csv(columns, given, self.rendered)  # type: ignore[arg-type]

    async def exports(self) -> None:
        for job in self.jobs("export", "completed"):
            want = self.rendering(job)
            status, body = await self.driver.call(
                self.driver.any_up(), "GET", f"/api/v1/jobs/{job.id}/result", job.org, timeout=aiohttp.ClientTimeout(total=60)
            )
            if status != 200:
                self.fail(
                    "export-content",
                    job.id,
                    f"the completed export's result answered {status}",
                    body if isinstance(body, dict) else None,
                )
            elif want is not None and body != want:
                self.fail("export-content", job.id, "the result differs from the checker's rendering", *_diff(body, want))
        for job in self.jobs("stream"):
            state, got = self.state(job), job.stream
            outcome = got.get("outcome")
            if outcome == "eof" and state != "completed":
                self.fail(
                    "stream-truth",
                    job.id,
                    f"the download ended cleanly but the export is {state}",
                    {"bytes": len(got.get("body", b""))},
                )
            if state == "completed" and outcome in ("eof", "broken", "?"):
                want = self.rendering(job)
                if outcome != "eof":
                    self.fail("stream-truth", job.id, f"the export completed but the client's download was {outcome}")
                elif want is not None and got["body"] != want:
                    self.fail(
                        "export-content",
                        job.id,
                        "the streamed CSV differs from the checker's rendering",
                        *_diff(got["body"], want),
                    )
            if outcome == "left" and state != "terminated":
                self.fail("stream-truth", job.id, f"the client left but the export is {state}")

    # -- 5xx -----------------------------------------------------------------

    def server_errors(self) -> None:
        windows = self.cluster.windows
        for r in self.driver.responses:
            if r.status is None or r.status < 500:
                continue
            excused = r.status == 503 and any(
                w.start <= r.t <= (w.end or float("inf")) + SHUTDOWN_SLACK
                and (w.kind == "db" or (w.kind.startswith("sigterm") and w.target == r.replica))
                for w in windows
            )
            if not excused:
                described = [
                    f"{w.kind} {w.target} {w.start - self.driver.t0:.2f}-{(w.end or 0) - self.driver.t0:.2f}s"
                    for w in self.cluster.windows
                ]
                self.fail(
                    "no-5xx",
                    None,
                    f"{r.status} from {r.replica} for {r.method} {r.path} at {r.t - self.driver.t0:.2f}s",
                    {"body": r.error, "fault windows": described},
                )


def _diff(got: bytes, want: bytes) -> list[Any]:
    a, b = got.split(b"\r\n"), want.split(b"\r\n")
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return [
        {
            "lines_got": len(a),
            "lines_want": len(b),
            "first_difference_at_line": first,
            "got": a[first : first + 2],
            "want": b[first : first + 2],
        }
    ]

"""What job code may write, and how: every write goes through a handle that the
job's context gives it, so an unfenced write cannot be expressed.

Each handle's write is sent only while the runner's lease is valid by its own
clock, with a deadline (PyMongo's timeout, sent as maxTimeMS) that ends
before the lease can expire: a replica that stalls and wakes after losing
the job sends nothing, and a write it had sent is cut off by the server
before another replica can hold the job. Undo writes are fenced the same way.

Every delete and compensating update also names the job in its filter (its
``job_id`` tag, its _id prefix, or the ``jobs`` mark on a user it touched), so
even a write that lands late can only touch that job's own documents.

Writes are sized by the time they take, not by rows (``Units``): a unit grows
slowly while writes are fast and shrinks at once when one is slow or times
out; a timed-out write is retried smaller while a cheap probe (``ping``) says
the database answers. Pause and terminate are looked at between units."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import pymongo
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, PyMongoError

from ..errors import JobFailed
from ..store.files import Bucket, ChunkWriter, StoredFile
from ..store.records import job_prefix, prefix_range, record_id
from ..store.teams import created_range, undo_range
from ..store.writes import Encoded, insert_encoded, insert_new
from .reservations import Reservations

# A unit aims at this long a write: short enough that a pause lands within a
# fraction of a second, long enough that per-command costs stay small.
UNIT_TARGET_SECONDS = 0.15
GROW = 1.5
PROBE_SECONDS = 5.0
SEND_ATTEMPTS = 3

T = TypeVar("T")


class Lease(Protocol):
    """The runner's side of the fence."""

    async def lease_left(self) -> float:
        """Seconds of valid lease left for a write; raises when the job is lost
        or the lease cannot be renewed."""

    async def reachable(self) -> bool:
        """Whether the database answers a cheap probe right now."""


class Units:
    """The size of one kind of write unit (rows, ids, chunks), from the time
    the last units took. A unit's time is modelled as a fixed cost per
    command plus a cost per item, fitted to the last few units: the size
    aims at the target time, or, where the fixed cost alone is near the
    target (a server that scans for every command), at about twice the
    fixed cost, since a smaller unit would only cost more commands. The
    size shrinks at once (to the model's size when a unit is slow, to a
    quarter when one times out) and grows by half at most per unit. ``first``
    is a guess; ``cap`` bounds a unit whatever the database's speed (a
    command's size, SQLite's variables per statement)."""

    KEEP = 8

    def __init__(self, first: int, cap: int, target: float = UNIT_TARGET_SECONDS) -> None:
        self.cap = max(1, cap)
        self.size = max(1, min(first, self.cap))
        self.target = target
        self._seen: list[tuple[int, float]] = []
        self._model: tuple[float, float] | None = None

    def take(self, left: int) -> int:
        return min(self.size, left)

    def landed(self, n: int, seconds: float) -> None:
        self._seen = [*self._seen[1 - self.KEEP :], (n, seconds)]
        ideal = self._ideal()
        if ideal < self.size:
            if seconds > 2 * self.target or n < self.size:
                self.size = max(1, ideal)
        elif n >= self.size:
            self.size = min(self.cap, ideal, int(self.size * GROW) + 1)

    def timed_out(self) -> None:
        self.size = max(1, self.size // 4)
        self._seen = []

    def _ideal(self) -> int:
        fixed, per_item = self._fit()
        if per_item <= 0:
            return self.cap
        if fixed >= self.target / 2:
            return max(1, min(self.cap, int(fixed / per_item)))
        return max(1, min(self.cap, int((self.target - fixed) / per_item)))

    def _fit(self) -> tuple[float, float]:
        """(fixed seconds per command, seconds per item), least squares over
        the units seen. Units all of one size say nothing of the split: the
        last model stands, or at first the whole time is taken per item."""
        k = len(self._seen)
        mean_n = sum(n for n, _ in self._seen) / k
        mean_t = sum(t for _, t in self._seen) / k
        var = sum((n - mean_n) ** 2 for n, _ in self._seen)
        if var == 0:
            if self._model is not None:
                fixed, per_item = self._model
                # Rescaled to what this size costs now (the database's speed moves).
                scale = mean_t / max(1e-9, fixed + per_item * mean_n)
                return fixed * scale, per_item * scale
            return 0.0, mean_t / max(1.0, mean_n)
        per_item = sum((n - mean_n) * (t - mean_t) for n, t in self._seen) / var
        if per_item <= 0:
            self._model = (mean_t, 0.0)
        else:
            self._model = (max(0.0, mean_t - per_item * mean_n), per_item)
        return self._model


def is_timeout(exc: BaseException) -> bool:
    """A write that ran out of its deadline while the connection was fine."""
    return isinstance(exc, PyMongoError) and exc.timeout and not isinstance(exc, ConnectionFailure)


def fate_unknown(exc: BaseException) -> bool:
    """A write that may still land: the client gave up on it (its deadline
    passed) or lost its connection after sending it, with no answer from the
    server. (MongoDB stops a write at its maxTimeMS; FerretDB does not stop an
    insert, so there one lands whenever the server gets to it.)"""
    return isinstance(exc, PyMongoError) and (exc.timeout or isinstance(exc, ConnectionFailure))


class Fence:
    """One job's gate for writes: a deadline from its lease, a probe, and the
    unit sizes of its writes."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        # Writes whose fate is unknown (fate_unknown), each with what sends it
        # again: settle() sends them until they have landed.
        self._unsettled: dict[object, Callable[[], Awaitable[Any]]] = {}

    async def settle(self) -> None:
        """Sends every write whose fate is unknown again, until each has landed:
        a replay of the same write adds nothing, and a database that applies
        writes to the same documents in order has applied the late one by then.
        The runner calls it before each run of a step (so a write is never
        replayed after later writes of the job: a file's reset after the chunks
        written since), before the job shows ``paused`` and before a rollback
        deletes. It raises like any write (the job then stays ``pausing``, or
        the step backs off, and tries again). What it cannot cover: a write
        sent by another process (a replica that stalled or stopped), whose
        deadline stops it on MongoDB (maxTimeMS) but not on FerretDB."""
        while self._unsettled:
            key = next(iter(self._unsettled))
            resend = self._unsettled.pop(key)  # a resend that fails records itself again
            await resend()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        left = await self._lease.lease_left()
        with pymongo.timeout(left):
            yield

    async def send(self, op: Callable[[], Awaitable[T]]) -> T:
        """One fenced write, sent again (a few times) when it times out on a
        database that still answers: every handle's write is idempotent. Past
        that it raises, and the runner backs off and runs the step again."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                async with self.write():
                    result = await op()
                self._unsettled.pop(op, None)
                return result
            except PyMongoError as exc:
                if fate_unknown(exc):
                    self._unsettled.setdefault(op, lambda: self.send(op))
                if not is_timeout(exc) or attempt + 1 == SEND_ATTEMPTS or not await self._lease.reachable():
                    raise
        raise AssertionError("unreachable")

    async def in_units(
        self,
        units: Units,
        items: Sequence[Any],
        op: Callable[[Sequence[Any]], Awaitable[T]],
        stop: Callable[[], bool] = lambda: False,
        done: Callable[[int, T], None] = lambda n, result: None,
    ) -> int:
        """Sends ``items`` in units, each one fenced write; between units,
        returns early when ``stop()`` says so. A unit that times out while the
        database answers its probe is sent again smaller; one that times out
        at a single item, or on a database that does not answer, raises (the
        runner then decides, with its own probe and budget, whether this is an
        outage). ``done(n, result)`` sees each landed unit. Returns how many
        items were sent."""
        sent = 0
        # Items sent in a unit whose fate is unknown: up to ``unknown_end``,
        # they are sent again (settle() does, if this returns or raises first).
        unknown: object | None = None
        unknown_end = 0
        while sent < len(items):
            if stop():
                return sent
            n = units.take(len(items) - sent)
            started = time.monotonic()
            try:
                async with self.write():
                    result = await op(items[sent : sent + n])
            except PyMongoError as exc:
                if fate_unknown(exc) and sent + n > unknown_end:
                    self._unsettled.pop(unknown, None)
                    unknown, unknown_end = object(), sent + n
                    self._unsettled[unknown] = functools.partial(self.in_units, units, items[sent:unknown_end], op)
                if not is_timeout(exc) or n == 1 or not await self._lease.reachable():
                    raise
                units.timed_out()
                continue
            units.landed(n, time.monotonic() - started)
            done(n, result)
            sent += n
            if unknown is not None and sent >= unknown_end:
                self._unsettled.pop(unknown, None)
                unknown = None
        return sent


class Records:
    """A job's records: inserted with their deterministic _ids (a replay is a
    no-op), deleted only inside the job's own _id prefix and tag. Both are
    sent in units sized by time."""

    def __init__(self, collection: AsyncCollection, fence: Fence, org_id: str, dataset: str, job_id: str) -> None:
        self._records = collection
        self._fence = fence
        self._tags = (org_id, dataset, job_id)
        self._mine = {"job_id": job_id}

    async def insert(
        self,
        units: Units,
        docs: Sequence[Encoded],
        stop: Callable[[], bool],
        done: Callable[[int, list[dict[str, Any]]], None],
    ) -> int:
        """Inserts ``docs`` unit by unit until done or ``stop()``; ``done(n,
        errors)`` sees each unit's rejected documents (``index`` into the
        unit). Returns how many documents were sent."""
        return await self._fence.in_units(units, docs, lambda unit: insert_encoded(self._records, unit), stop, done)

    async def delete_rows(self, units: Units, rows: range, stop: Callable[[], bool], done: Callable[[int, int], None]) -> int:
        """Deletes the job's rows numbered in ``rows``, a range of _ids per
        unit; ``done(n, deleted)`` sees each unit. Returns how many row
        numbers were covered."""

        async def delete(unit: Sequence[int]) -> int:
            assert isinstance(unit, range)
            ids = {"$gte": record_id(*self._tags, unit.start), "$lt": record_id(*self._tags, unit.stop)}
            return (await self._records.delete_many({"_id": ids, **self._mine})).deleted_count

        return await self._fence.in_units(units, rows, delete, stop, done)

    async def count(self) -> int:
        """How many of the job's rows exist (a primary-key range count)."""
        return await self._records.count_documents({"_id": prefix_range(job_prefix(*self._tags)), **self._mine})

    async def delete_all(self) -> int:
        """Deletes whatever of the job's rows is left (its whole _id prefix)."""
        query = {"_id": prefix_range(job_prefix(*self._tags)), **self._mine}
        result = await self._fence.send(lambda: self._records.delete_many(query))
        return result.deleted_count


class Reader(Protocol):
    async def read(self, size: int) -> bytes: ...

    async def close(self) -> None: ...


class Upload:
    """The job's stored upload: read from any offset; deleted by its own job
    only, and with it the org's upload bytes it held (MAX_UPLOAD_BYTES_PER_ORG)."""

    def __init__(self, bucket: Bucket, fence: Fence, file_id: Any, release: Callable[[], Awaitable[Any]]) -> None:
        self._bucket = bucket
        self._fence = fence
        self.file_id = file_id
        self._release = release

    async def reader(self, offset: int) -> Reader:
        return await self._bucket.reader(self.file_id, offset)

    async def delete(self) -> None:
        await self._fence.send(lambda: self._bucket.delete(self.file_id))
        await self._fence.send(self._release)


class QuotaExceeded(JobFailed):
    """The job would store more than its org may (a per-org storage quota)."""


class Stored:
    """The job's share of one of its org's storage quotas (imported records,
    stored export results): raised to what the job has written before each
    write, so the write that would pass the quota is never sent. The share
    is the job's, named by its id: a replayed batch reserves nothing twice,
    and the share goes when what it measures is deleted."""

    def __init__(
        self, reservations: Reservations, fence: Fence, org_id: str, scope: str, job_id: str, limit: int, name: str, what: str
    ) -> None:
        self._reservations = reservations
        self._fence = fence
        self._key = (org_id, scope, job_id)
        self._limit, self._name, self._what = limit, name, what

    async def reserve(self, total: int) -> None:
        """The job's share becomes ``total`` bytes; QuotaExceeded (a retryable
        failure) when the org's would pass the quota."""
        if not await self._fence.send(lambda: self._reservations.ensure(*self._key, total, self._limit)):
            raise QuotaExceeded(
                f"Your organisation's {self._what} would pass {self._limit} bytes ({self._name}); "
                "nothing past the quota was written. Free space (terminate or delete jobs you do not need) "
                "and retry this job."
            )

    async def release(self) -> None:
        await self._fence.send(lambda: self._reservations.release(*self._key))


def attempt_file_id(job_id: str, epoch: int) -> str:
    """Each attempt of a job writes its own result file, named by the job and
    the attempt's epoch; every attempt of a job shares the prefix ``job_id:``."""
    return f"{job_id}:{epoch:08d}"


def attempt_job_id(file_id: Any) -> str | None:
    """The job whose attempt wrote a file named by attempt_file_id, else None."""
    if isinstance(file_id, str) and ":" in file_id:
        return file_id.split(":", 1)[0]
    return None


class ResultFiles:
    """A job's result files (an export): each attempt writes its own file, so
    a stalled attempt can never touch the file of the attempt that replaced
    it; the job's completion points at the attempt that finished."""

    def __init__(self, bucket: Bucket, fence: Fence, org_id: str, job_id: str, epoch: int) -> None:
        self._bucket = bucket
        self._fence = fence
        self._org_id = org_id
        self._job_id = job_id
        self.file_id = attempt_file_id(job_id, epoch)

    def writer(self, filename: str) -> FencedWriter:
        writer = self._bucket.writer(self.file_id, filename, {"org_id": self._org_id, "job_id": self._job_id})
        return FencedWriter(writer, self._fence)

    async def delete_all(self) -> None:
        """Every attempt's file (a terminate): chunks by the job's prefix of
        file ids, files documents likewise."""
        await self._fence.send(lambda: delete_attempts(self._bucket, self._job_id))

    async def delete_superseded(self) -> None:
        """After the job completed with this attempt's file: the files of its
        other attempts (named by the job's prefix: nothing of another job matches)."""
        await self._fence.send(lambda: delete_attempts(self._bucket, self._job_id, keep=self.file_id))


async def delete_attempts(bucket: Bucket, job_id: str, keep: str | None = None) -> None:
    """The files of a job's attempts, but ``keep``'s; unfenced, for a finished
    job's result (retention, DELETE): job code uses ResultFiles."""
    ids: dict[str, Any] = prefix_range(f"{job_id}:")
    if keep is not None:
        ids["$ne"] = keep
    await bucket.files.delete_many({"_id": ids})
    await bucket.chunks.delete_many({"files_id": ids})


class FencedWriter:
    """This attempt's ChunkWriter, every write of it fenced. What it wrote is
    made durable at the job's checkpoints (sync), and a later attempt goes on
    from there in a file of its own (resume): an earlier attempt that stalls
    and wakes can only ever write its own file, and its file is only read.
    Nothing of it is deleted when a run stops: an adopter or a retry goes on
    from it, and the job's completion or rollback removes the attempts' files."""

    def __init__(self, writer: ChunkWriter, fence: Fence) -> None:
        self._writer = writer
        self._fence = fence

    @property
    def written(self) -> int:
        return self._writer.written

    async def write(self, data: bytes) -> None:
        self._writer.add(data)
        while self._writer.full():
            await self._fence.send(self._writer.store_some)

    async def sync(self) -> int:
        """Stores all written so far (the short last chunk too); returns its length.
        Like every store of this writer it is a fenced send: one whose answer
        is lost is sent again (the same chunks, the same short chunk) before
        the step runs again or the job shows paused, so a late one cannot
        land over what was written after it."""
        return await self._fence.send(self._writer.sync)

    async def resume(self, source_id: str, length: int) -> bool:
        """Goes on after the first ``length`` bytes that a sync() of ``source_id``
        (an earlier attempt's file, or this one's) stored: its chunks are copied
        into this attempt's file, a few per fenced insert. False, with the file
        empty, when the source does not hold them."""
        return await self._writer.resume(source_id, length, self._fence.send)

    async def reset(self) -> None:
        """Starts this attempt's file again from nothing."""
        await self._fence.send(self._writer.reset)

    async def close(self) -> StoredFile:
        self._writer.seal()
        await self._fence.send(self._writer.sync)
        return await self._fence.send(self._writer.store_files_document)


class Teams:
    """A teams job's writes to ``teams``, ``users`` and its undo log.

    The job's teams and the users it created carry its ``job_id``; every user
    it creates or changes also carries the job's id in ``jobs`` until the
    rollback has finished with that user. Every compensation names the job
    (``jobs``), every delete names the job or the user's creator, and the
    undo entries are the job's own _id prefix: a late compensation can only
    find what is still this job's."""

    def __init__(self, teams: AsyncCollection, users: AsyncCollection, undo: AsyncCollection, fence: Fence, job_id: str) -> None:
        self._teams, self._users, self._undo = teams, users, undo
        # What the job reads: never written through these.
        self.teams_collection, self.users_collection, self.undo_collection = ReadOnly(teams), ReadOnly(users), ReadOnly(undo)
        self._fence = fence
        self.job_id = job_id

    # -- forward ---------------------------------------------------------------

    async def insert_undo(self, entries: list[dict[str, Any]]) -> int:
        return await self._fence.send(lambda: insert_new(self._undo, entries))

    async def insert_users(self, docs: list[dict[str, Any]]) -> int:
        for doc in docs:
            doc["jobs"] = [self.job_id]
        return await self._fence.send(lambda: insert_new(self._users, docs))

    async def insert_teams(self, docs: list[dict[str, Any]]) -> int:
        return await self._fence.send(lambda: insert_new(self._teams, docs))

    def note_name(self, uid: str, name: str) -> Callable[[], Awaitable[Any]]:
        """A later batch fills the name of a user an earlier one only added to a
        team: its undo entry learns the name first (the first write won)."""
        query = {"_id": f"{self.job_id}:{uid}", "job_id": self.job_id, "name_set": None}
        return lambda: self._undo.update_one(query, {"$set": {"name_set": name}})

    def change_user(self, uid: str, update: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        """An existing user gains teams (and maybe a name); the job marks it."""
        update = {**update, "$addToSet": {**update.get("$addToSet", {}), "jobs": self.job_id}}
        return lambda: self._users.update_one({"_id": uid}, update)

    async def concurrently(self, calls: Iterable[Callable[[], Awaitable[Any]]], in_flight: int) -> None:
        """Single-document writes (idempotent), a few at a time, each sent as
        its own fenced write (Fence.send: one whose fate is unknown is settled
        before the job shows paused or runs the step again). A group ends
        when each of its writes has landed or failed; then the first failure
        is raised."""
        pending = list(calls)
        for start in range(0, len(pending), in_flight):
            group = pending[start : start + in_flight]
            results = await asyncio.gather(*(self._fence.send(call) for call in group), return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed

    # -- rollback --------------------------------------------------------------

    def _user(self, uid: str, **more: Any) -> dict[str, Any]:
        return {"_id": uid, "jobs": self.job_id, **more}

    async def pull_teams(self, uid: str, team_ids: list[str]) -> None:
        await self._fence.send(lambda: self._users.update_one(self._user(uid), {"$pullAll": {"teams": team_ids}}))

    async def restore_name(self, uid: str, name_set: str, restore: dict[str, Any]) -> None:
        await self._fence.send(lambda: self._users.update_one(self._user(uid, name=name_set), restore))

    async def drop_empty_teams(self, uid: str) -> None:
        await self._fence.send(lambda: self._users.update_one(self._user(uid, teams=[]), {"$unset": {"teams": ""}}))

    async def unmark(self, uid: str) -> dict[str, Any] | None:
        """The job is done with this user: its mark goes (and the field, once
        empty). Returns the user as it is now (None if it is gone)."""
        doc = await self._fence.send(
            lambda: self._users.find_one_and_update(
                self._user(uid), {"$pull": {"jobs": self.job_id}}, return_document=ReturnDocument.AFTER
            )
        )
        if doc is None:
            return await self.users_collection.find_one({"_id": uid})
        if doc.get("jobs") == []:
            await self._fence.send(lambda: self._users.update_one({"_id": uid, "jobs": []}, {"$unset": {"jobs": ""}}))
            doc.pop("jobs")
        return doc

    async def delete_user(self, uid: str, name: Any, creator: str) -> int:
        """Deletes a user left empty, as read (no team, the name read, created
        by ``creator`` and marked by no job): a concurrent change keeps it."""
        query = {"_id": uid, "teams": [], "name": name, "job_id": creator, "jobs": {"$exists": False}}
        result = await self._fence.send(lambda: self._users.delete_one(query))
        return result.deleted_count

    async def orphan_user(self, uid: str) -> None:
        """A user this job created outlives its rollback (other teams list it, or
        someone edited it): it belongs to nobody now, and the rollback that
        empties it later may delete it."""
        query = {"_id": uid, "job_id": self.job_id}
        await self._fence.send(lambda: self._users.update_one(query, {"$set": {"orphaned": True}}))

    async def delete_teams(self, ids: list[str]) -> int:
        query = {"_id": {"$in": ids}, "job_id": self.job_id}
        result = await self._fence.send(lambda: self._teams.delete_many(query))
        return result.deleted_count

    async def delete_undo(self, ids: list[str]) -> None:
        query = {"_id": {"$in": ids, **undo_range(self.job_id)}}
        await self._fence.send(lambda: self._undo.delete_many(query))

    async def settle(self, uid: str, pins: dict[str, Any], update: dict[str, Any]) -> bool:
        """A user's whole compensation in one write, when the job's mark is its
        only one and the user is still as read (``pins``: its ``teams`` and, for
        a name restore, its ``name``); False when it changed meanwhile (then
        the single steps above are taken instead)."""
        query = {"_id": uid, "jobs": [self.job_id], **pins}
        result = await self._fence.send(lambda: self._users.update_one(query, update))
        return result.matched_count == 1

    async def delete_as_read(self, docs: list[dict[str, Any]]) -> int:
        """Deletes users this job created and nothing else touched, each pinned on
        what was read (its teams, all the job's; its name; the job's mark
        alone), in one delete command of a statement per user (a delete with
        many statements is served statement by statement from the _id index on
        FerretDB; an update with many stalls it, see the README). Returns how
        many were deleted: one that changed meanwhile is not."""
        if not docs:
            return 0
        ops = [
            pymongo.DeleteOne(
                {"_id": d["_id"], "job_id": self.job_id, "jobs": [self.job_id], "teams": d.get("teams"), "name": d.get("name")}
            )
            for d in docs
        ]
        result = await self._fence.send(lambda: self._users.bulk_write(ops, ordered=False))
        return result.deleted_count

    async def delete_created(self, what: str, ids: list[str]) -> None:
        """Drops entries of the list of what the job created, once rolled back."""
        query = {"_id": {"$in": ids, **created_range(self.job_id, what)}}
        await self._fence.send(lambda: self._undo.delete_many(query))


class Profiles:
    """The dataset profile's entry for this import (each change names the job)."""

    def __init__(self, collection: AsyncCollection, fence: Fence, org_id: str, dataset: str, job_id: str) -> None:
        self._profiles = collection
        self._fence = fence
        self._org_id = org_id
        self._dataset = dataset
        self._job_id = job_id

    async def history(self) -> list[dict[str, Any]]:
        from ..profiles import store

        return await store.history(self._profiles, self._org_id, self._dataset)

    async def record(self, entry: dict[str, Any]) -> None:
        from ..profiles import store

        assert entry["job_id"] == self._job_id
        await self._fence.send(lambda: store.record_import(self._profiles, self._org_id, self._dataset, entry))

    async def forget(self) -> None:
        from ..profiles import store

        await self._fence.send(lambda: store.forget_import(self._profiles, self._org_id, self._dataset, self._job_id))


class ReadOnly:
    """A collection job code may read and not write."""

    def __init__(self, collection: AsyncCollection) -> None:
        self._collection = collection

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self._collection.find(*args, **kwargs)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._collection.find_one(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return await self._collection.count_documents(*args, **kwargs)

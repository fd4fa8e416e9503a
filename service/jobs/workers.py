"""Where an import's batches are parsed, typed and encoded: in this process
(JOB_WORKERS=1), or in JOB_WORKERS worker processes while the event loop only
cuts the file into batches and sends what comes back.

Processes rather than threads: parsing, typing and encoding are Python code
that holds the GIL. The file is cut in the event loop (BatchCutter: a split
and a count per batch of plain lines, a regex for quoted records), so each batch's bytes, row numbers and checkpoint position are
known before a worker sees it; a worker runs the very code the in-process path
runs (RecordReader.parse_all, then the job's builder) and sends back encoded
documents, which pickle as plain bytes. Batches come back in file order, so
order, row numbers, checkpoints, pause and resume are the same either way; a
batch whose parse disagrees with its cut (a file the cut's rule does not
describe exactly) or a worker that died makes the rest of the job read in
order in this process, from the bytes already read."""

from __future__ import annotations

import asyncio
import csv
import gc
import logging
import multiprocessing
import os
import pickle
from array import array
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, overload

from ..csvio.cutter import BatchCutter, Segment
from ..csvio.records import Position, Record, RecordReader
from ..store.writes import Encoded
from .lifeline import end_with_parent

log = logging.getLogger(__name__)

WORKER_NICENESS = 10
# Records built in this process between two turns of the event loop: a few
# milliseconds of work (the README's benchmarks have the figures).
BUILD_SLICE = 500
GC_THRESHOLD = 50_000


class Builder(Protocol):
    """Turns records into encoded documents and row errors (the import's
    RowBuilder); it must pickle, to be sent to a worker process."""

    def build(self, batch: list[Record]) -> tuple[list[Encoded], Sequence[Record], list[dict[str, Any]]]: ...


@dataclass
class Built:
    """One batch, ready to insert: ``sources[i]`` is the record of ``docs[i]``."""

    docs: list[Encoded]
    sources: Sequence[Record]
    errors: list[dict[str, Any]]
    first_row: int
    processed: int  # records read, including those that became row errors
    position: dict[str, int]  # where the next batch starts


class BuildPool:
    """The worker processes of one replica, started on first use and kept for
    the next import. Spawned, not forked: the parent runs an event loop and the
    database driver's connections, which a fork would copy.

    ``max_field_size`` is csv's field limit (MAX_FIELD_SIZE): the limit is
    per process, and a spawned worker would otherwise parse with Python's."""

    def __init__(self, workers: int, max_field_size: int) -> None:
        self.workers = workers
        self.max_field_size = max_field_size
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor | None:
        """None when batches are built in this process."""
        if self.workers <= 1:
            return None
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(self.max_field_size, os.getpid()),
            )
        return self._executor

    def discard(self, executor: ProcessPoolExecutor) -> None:
        """A worker died (killed for memory, say): start afresh next time, and
        end the broken pool's other processes. On Python 3.11 a pool that
        breaks while a submit starts a new worker can lose its manager thread
        (it iterates the process table as the submit adds to it), leaving that
        worker blocked on the dead one's queue lock; multiprocessing then waits
        for it at exit, and the process never ends (seen in CI)."""
        if self._executor is executor:
            self._executor = None
        _stop(executor, wait=False)

    def close(self, wait: bool = False) -> None:
        """Stops the workers. Without ``wait`` they are terminated rather than
        asked to finish (what they were building is not wanted any more): on
        SIGTERM the process must exit well inside its grace period, and a
        worker still starting up would hold the exit for seconds."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            _stop(executor, wait)


def _stop(executor: ProcessPoolExecutor, wait: bool) -> None:
    """Shuts a pool down; without ``wait``, its processes are terminated rather
    than asked to finish. Python 3.14 has terminate_workers(); before it, the
    pool's process table (a copy: the pool may still be changing it)."""
    processes = list(dict(getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=wait, cancel_futures=True)
    if not wait:
        for process in processes:
            process.terminate()


async def built_batches(
    read: Callable[[int], Awaitable[bytes]],
    start: Position,
    size: int,
    max_bytes: int,
    builder: Builder,
    pool: BuildPool | None,
) -> AsyncGenerator[Built, None]:
    """The batches of the input from ``start``, built, in order. Each is at most
    ``size`` records (or fewer, spanning ``max_bytes``): RecordReader.batches'
    batches, wherever they are built."""
    executor = pool.executor() if pool is not None and _picklable(builder) else None
    if pool is None or executor is None:
        async for built in _in_process(read, start, size, max_bytes, builder):
            yield built
        return
    loop = asyncio.get_running_loop()
    cutter = BatchCutter(read, start, size, max_bytes)
    pending: deque[tuple[Segment, asyncio.Future[_Result]]] = deque()
    depth = pool.workers + 1  # every worker busy while the oldest batch is collected
    stalled: Segment | None = None  # the first batch not built by a worker

    async def oldest(at_end: bool) -> Built | None:
        """The oldest pending batch, built, once it is due (done, the pipeline
        full, or the file read to its end); None when nothing is due or when
        its worker's result is unusable (then ``stalled`` says which)."""
        nonlocal stalled
        if not pending or not (at_end or len(pending) >= depth or pending[0][1].done()):
            return None
        built = await _collect(builder, pool, executor, *pending[0], size)
        if built is None:
            stalled = pending[0][0]
            return None
        pending.popleft()
        return built

    try:
        segments = cutter.segments()
        async for segment in segments:
            pending.append((segment, _submit(loop, executor, builder, segment)))
            while (ready := await oldest(at_end=False)) is not None:
                yield ready
            if stalled is not None:
                break
        while stalled is None and (ready := await oldest(at_end=True)) is not None:
            yield ready
        if stalled is None and cutter.irregular:
            stalled = Segment(b"", cutter.position(), None, None)
        if stalled is None:
            return
        # Read the rest in order, here: first the bytes already cut (the stalled
        # batch is the oldest pending one), then the file.
        replay = [s.data for s, _ in pending] + [cutter.rest()]
        for _, future in pending:
            future.cancel()
        pending.clear()
        log.info("import from row %d reads in order in this process", stalled.start.row + 1)
        async for built in _in_process(_replaying(replay, read), stalled.start, size, max_bytes, builder):
            yield built
    finally:
        for _, future in pending:
            future.cancel()


def _submit(
    loop: asyncio.AbstractEventLoop, executor: ProcessPoolExecutor, builder: Builder, segment: Segment
) -> asyncio.Future[_Result]:
    try:
        return loop.run_in_executor(executor, build_segment, builder, segment)
    except BrokenProcessPool as exc:  # known dead already: collected like any other failure
        failed: asyncio.Future[_Result] = loop.create_future()
        failed.set_exception(exc)
        return failed


def _picklable(builder: Builder) -> bool:
    """A builder holding something that cannot go to another process (a
    closure, say) builds in this process instead."""
    try:
        pickle.dumps(builder)
    except Exception:  # noqa: BLE001 - any failure to pickle means: build here
        log.info("this import's builder cannot be sent to worker processes; building in-process")
        return False
    return True


async def _collect(
    builder: Builder,
    pool: BuildPool,
    executor: ProcessPoolExecutor,
    segment: Segment,
    future: asyncio.Future[_Result],
    size: int,
) -> Built | None:
    """The built batch, or None when it must be read in order instead."""
    try:
        result = await future
    except BrokenProcessPool:
        log.warning("an import worker process died; reading on in this process")
        pool.discard(executor)
        return None
    if segment.records is None:
        agrees = result.processed <= size
    else:
        agrees = result.processed == segment.records and result.position == segment.end and not result.cut_short
    if not agrees:
        return None
    if result.samples:  # rows the worker's builder sampled for the dataset's profile
        assert hasattr(builder, "profile")  # only a builder with a profile samples rows (build_segment)
        for fields in result.samples:
            builder.profile.add(fields)
    docs = list(map(Encoded, result.raws))
    sources = _Sources(result.rows, result.lines)
    return Built(docs, sources, result.errors, result.first_row, result.processed, result.position.as_dict())


async def _in_process(read, start: Position, size: int, max_bytes: int, builder: Builder) -> AsyncIterator[Built]:
    """Builds a batch BUILD_SLICE records at a time, letting the event loop run
    between slices: 5,000 rows built at once held it for 20-40 ms, and with two
    imports /healthz waited past 50 ms (p99 59 ms)."""
    reader = RecordReader(read, start)
    async for records in reader.batches(size, max_bytes):
        docs: list[Encoded] = []
        sources: list[Record] = []
        errors: list[dict[str, Any]] = []
        for at in range(0, len(records), BUILD_SLICE):
            if at:
                await asyncio.sleep(0)
            built = builder.build(records[at : at + BUILD_SLICE])
            docs += built[0]
            sources += built[1]
            errors += built[2]
        yield Built(docs, sources, errors, records[0].row, len(records), reader.position().as_dict())


def _replaying(pieces: list[bytes], read: Callable[[int], Awaitable[bytes]]) -> Callable[[int], Awaitable[bytes]]:
    queue = deque(p for p in pieces if p)

    async def replay(size: int) -> bytes:
        if not queue:
            return await read(size)
        piece = queue.popleft()
        if len(piece) > size:
            queue.appendleft(piece[size:])
            piece = piece[:size]
        return piece

    return replay


# -- in the worker process ---------------------------------------------------


def _worker_start(max_field_size: int, parent: int) -> None:
    end_with_parent(parent)
    csv.field_size_limit(max_field_size)
    # Workers do throughput work; the event loop answers probes and requests.
    # Lower priority lets the loop have a core the moment it needs one, even
    # with as many workers as cores.
    os.nice(WORKER_NICENESS)
    tune_gc()


def tune_gc() -> None:
    """Called once a process has imported its code. An import allocates a
    dozen objects per row, none of them in a reference cycle, so the default
    collector (a pass every 700 allocations, walking every object the process
    holds now and then) cost a fifth of the CPU per row. Objects alive now are
    frozen out of its passes, and a pass waits for 50,000 allocations."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)


@dataclass(frozen=True, slots=True)
class _Result:
    raws: list[bytes]
    rows: array  # row and line of each document, for row errors the database reports
    lines: array
    errors: list[dict[str, Any]]
    first_row: int
    processed: int
    position: Position
    cut_short: bool
    samples: list[list[str]]


class _Samples:
    """Stands in for a builder's profile in a worker: keeps the sampled rows."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(self, fields: list[str]) -> None:
        self.rows.append(fields)


def build_segment(builder: Builder, segment: Segment) -> _Result:
    reader = RecordReader(_no_read, segment.start)
    records, cut_short = reader.parse_all(segment.data)
    # A builder that samples rows for a profile samples into a list here; the
    # parent's builder adds them to its profile in file order.
    sampler: _Samples | None = None
    if hasattr(builder, "profile"):
        sampler = builder.profile = _Samples()
    docs, sources, errors = builder.build(records)
    return _Result(
        [doc.raw for doc in docs],
        array("q", [s.row for s in sources]),
        array("q", [s.line for s in sources]),
        errors,
        records[0].row if records else segment.start.row + 1,
        len(records),
        reader.position(),
        cut_short,
        sampler.rows if sampler is not None else [],
    )


async def _no_read(size: int) -> bytes:
    return b""


class _Sources(Sequence[Record]):
    """The records of a batch built elsewhere, made only when asked for (a row
    error the database reports): their fields stayed in the worker."""

    __slots__ = ("_rows", "_lines")

    def __init__(self, rows: array, lines: array) -> None:
        self._rows = rows
        self._lines = lines

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> _Sources: ...

    def __getitem__(self, index: int | slice) -> Record | _Sources:
        if isinstance(index, slice):
            return _Sources(self._rows[index], self._lines[index])
        return Record(self._rows[index], self._lines[index], None, None)

    def __iter__(self) -> Iterator[Record]:
        return (Record(row, line, None, None) for row, line in zip(self._rows, self._lines))

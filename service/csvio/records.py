"""Streaming CSV records from an async byte source, with file line numbers and
byte offsets at record boundaries (the import's resumable position).

Bytes are split into lines; lines are grouped into whole records by counting
quote characters (a newline inside a quoted field leaves an odd count), and only
whole records are handed to ``csv.reader``, which reads from a resumable
iterator. Memory is bounded by one read chunk plus one record."""

from __future__ import annotations

import asyncio
import csv
import re
import sys
from bisect import bisect_left
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate, repeat

READ_CHUNK = 256 * 1024
MAX_RECORD_BYTES = 16 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
_TEXT_LINE = re.compile(r"[^\n]*\n")


@dataclass(slots=True)
class Record:
    # Not frozen: a frozen dataclass's __init__ costs three times as much, once per row.
    row: int  # 1-based data row number
    line: int  # file line where the record starts (header = line 1)
    fields: list[str] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where to continue: the byte offset of the next record and the numbers so far."""

    offset: int
    line: int
    row: int

    def as_dict(self) -> dict[str, int]:
        return {"offset": self.offset, "line": self.line, "row": self.row}


class _PlainRun:
    """A run of whole lines that are each one record (plain ASCII, no quote, no
    NUL: see _Splitter._push_plain), read as records a batch at a time: one
    csv.reader pass over the run and list-at-a-time bookkeeping instead of a
    Python call per line through _LineFeed and _drain."""

    __slots__ = ("lines", "fields", "ends", "at", "slow")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.fields: list[list[str]] | None = None  # parsed on first use
        self.ends: list[int] = []  # ends[i]: characters (= bytes, ASCII) up to the end of line i
        self.at = 0  # lines taken so far
        self.slow = False  # read line by line instead

    def parse(self) -> bool:
        """Parses the run; False (and ``slow``) if it has a blank line (not a
        record) or a line csv.reader rejects, which the line-by-line path
        reads as it always does."""
        if self.fields is None and not self.slow:
            try:
                self.fields = list(csv.reader(self.lines, strict=False))
            except csv.Error:  # a stray CR, say: a row error, found line by line
                self.fields = None
            if self.fields is None or [] in self.fields:
                self.fields, self.slow = None, True
            else:
                self.ends = list(accumulate(map(len, self.lines)))
        return not self.slow

    def count(self, rows: int, chars: int) -> int:
        """How many lines from ``at`` make at most ``rows`` records, ending early
        once they span ``chars`` (so at most one line more)."""
        past = bisect_left(self.ends, self.chars_before(self.at) + chars, self.at) + 1  # the line that reaches ``chars``
        return max(0, min(rows, past - self.at, len(self.lines) - self.at))

    def chars_before(self, index: int) -> int:
        return self.ends[index - 1] if index else 0


class _LineFeed:
    """The iterator csv.reader reads from. It runs dry only between records, and
    csv.reader simply continues when it is refilled."""

    __slots__ = ("lines", "consumed", "line_no", "problems", "dry")

    def __init__(self, line_no: int) -> None:
        self.lines: deque[str | bytes | int | _PlainRun] = deque()
        self.consumed = 0
        self.line_no = line_no
        self.problems: dict[int, str] = {}
        self.dry = 0  # times csv.reader found it empty

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if not self.lines:
            self.dry += 1
            raise StopIteration
        raw = self.lines.popleft()
        while type(raw) is _PlainRun:
            # Read line by line: a run parse() refused, or csv.reader reading on
            # into a run (a record it cut differently from the quote rule).
            self.lines.extendleft(reversed(raw.lines[raw.at :]))
            if not self.lines:
                self.dry += 1
                raise StopIteration
            raw = self.lines.popleft()
        self.line_no += 1
        if type(raw) is str:  # from a run of plain ASCII lines, checked as a whole
            self.consumed += len(raw)
            return raw
        if type(raw) is int:  # an over-long line, already dropped: only its length is left
            self.consumed += raw
            self.problems[self.line_no] = f"line longer than {MAX_RECORD_BYTES} bytes"
            return "\n"
        assert type(raw) is bytes  # the rest: a line as read, to decode
        self.consumed += len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems[self.line_no] = f"invalid UTF-8 (byte {exc.start + 1} of the line)"
            return raw.decode("utf-8", "replace")
        if "\x00" in text:
            self.problems[self.line_no] = "NUL character in the line (is the file UTF-16 or binary?)"
        return text


class _Splitter:
    """Cuts byte chunks into lines and releases them in whole-record groups."""

    def __init__(self, feed: _LineFeed) -> None:
        self.feed = feed
        self.partial = bytearray()
        self.dropping = 0  # bytes of an over-long line dropped so far
        self.group: list[bytes | int] = []
        self.group_bytes = 0
        self.in_quotes = False

    def push(self, chunk: bytes) -> None:
        start = 0
        plain_checked = False
        while True:
            if not plain_checked and not (self.partial or self.dropping or self.in_quotes):
                plain_checked = True
                start = self._push_plain(chunk, start)
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep_partial(chunk[start:])
                return
            if self.dropping:
                self._add(self.dropping + end + 1 - start)
                self.dropping = 0
            elif self.partial:
                self.partial += chunk[start : end + 1]
                self._add(bytes(self.partial))
                self.partial.clear()
            else:
                self._add(chunk[start : end + 1])
            start = end + 1

    def _push_plain(self, chunk: bytes, start: int) -> int:
        """Releases the chunk's whole lines from ``start`` at once when they are
        plain ASCII records: no quote (each line is then a record), no NUL, not
        over-long. Most files are; per line this saves the splitting and the
        decoding in Python. Returns where the line-by-line path goes on."""
        last = chunk.rfind(b"\n") + 1
        if last - start < 2 or last - start > MAX_RECORD_BYTES or chunk.find(b'"', start, last) >= 0:
            return start
        region = chunk[start:last]
        if not region.isascii() or b"\x00" in region:
            return start
        self.feed.lines.append(_PlainRun(_TEXT_LINE.findall(region.decode("ascii"))))
        return last

    def finish(self) -> None:
        if self.dropping:
            self._add(self.dropping)
        elif self.partial:
            self._add(bytes(self.partial))
        self.partial.clear()
        self.dropping = 0
        self._release()

    def _keep_partial(self, tail: bytes) -> None:
        if self.dropping:
            self.dropping += len(tail)
            return
        self.partial += tail
        if len(self.partial) > MAX_RECORD_BYTES:
            self.dropping = len(self.partial)
            self.partial.clear()

    def _add(self, line: bytes | int) -> None:
        if type(line) is not bytes:  # an over-long line's length
            self.in_quotes = False
            self.group.append(line)
            self._release()
            return
        if line.count(b'"') % 2:
            self.in_quotes = not self.in_quotes
        self.group.append(line)
        self.group_bytes += len(line)
        # A quoted field that never closes must not hold the whole file in memory.
        if not self.in_quotes or self.group_bytes > MAX_RECORD_BYTES:
            self.in_quotes = False
            self._release()

    def _release(self) -> None:
        self.feed.lines.extend(self.group)
        self.group = []
        self.group_bytes = 0


class RecordReader:
    """Reads records after the header from ``read(n) -> bytes`` (b"" at the end),
    starting at ``start`` (where the header ended, or a checkpoint)."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]], start: Position) -> None:
        self._read = read
        self._base = start.offset
        self._feed = _LineFeed(start.line)
        self._splitter = _Splitter(self._feed)
        self._reader = csv.reader(self._feed, strict=False)
        self._row = start.row
        self._eof = False
        self._pending: list[Record] = []  # the batch being filled
        self._pending_start = 0  # feed.consumed where it started

    def parse_all(self, data: bytes) -> tuple[list[Record], bool]:
        """Every record of ``data``, the rest of the input, read at once (a batch
        that JOB_WORKERS processes read from memory) by the same rules as
        batches(); position() is then the end of ``data``. Also says whether
        csv.reader saw the data end inside a record (a quote it reads
        differently from the quote-parity rule): read in order, that record
        would have gone on."""
        self._splitter.push(data)
        self._splitter.finish()
        self._eof = True
        records: list[Record] = []
        for batch in self._cut(sys.maxsize, sys.maxsize):
            records += batch
        records += self._close_batch()
        # Running dry once is the end; more means a record was cut short by it.
        return records, self._feed.dry > 1

    def position(self) -> Position:
        return Position(self._base + self._feed.consumed, self._feed.line_no, self._row)

    async def batches(self, size: int, max_bytes: int) -> AsyncIterator[list[Record]]:
        """Yields lists of at most ``size`` records, ending a list early once its
        records span ``max_bytes`` of the file (so at most one record more); the
        position after each list is a record boundary, safe to checkpoint."""
        self._pending_start = self._feed.consumed
        while True:
            for batch in self._cut(size, max_bytes):
                yield batch
            if self._eof:
                break
            # A stored file's reads often return from a buffer without waiting:
            # let the event loop run between chunks all the same.
            await asyncio.sleep(0)
            chunk = await self._read(READ_CHUNK)
            if chunk:
                self._splitter.push(chunk)
            else:
                self._eof = True
                self._splitter.finish()
        for batch in self._cut(size, max_bytes):
            yield batch
        if self._pending:
            yield self._close_batch()

    def _cut(self, size: int, max_bytes: int) -> Iterator[list[Record]]:
        """The full batches of the records the feed holds now; the records
        after the last full one stay pending for the next call."""
        feed = self._feed
        while True:
            for record in self._drain():
                self._pending.append(record)
                if self._full(size, max_bytes):
                    yield self._close_batch()
            run = feed.lines[0] if feed.lines else None
            if type(run) is not _PlainRun:
                return  # the feed ran dry
            if not run.parse():
                continue  # read line by line: _LineFeed unpacks it
            while run.at < len(run.lines):
                self._pending += self._take(run, size - len(self._pending), max_bytes - (feed.consumed - self._pending_start))
                if self._full(size, max_bytes):
                    yield self._close_batch()
            feed.lines.popleft()

    def _full(self, size: int, max_bytes: int) -> bool:
        return len(self._pending) >= size or self._feed.consumed - self._pending_start >= max_bytes

    def _close_batch(self) -> list[Record]:
        batch, self._pending = self._pending, []
        self._pending_start = self._feed.consumed
        return batch

    def _take(self, run: _PlainRun, rows: int, chars: int) -> list[Record]:
        """The next records of a plain run, as _drain would read them one by one."""
        first = run.at
        n = run.count(rows, chars)
        run.at = last = first + n
        feed = self._feed
        feed.consumed += run.chars_before(last) - run.chars_before(first)
        line = feed.line_no + 1
        feed.line_no += n
        row = self._row + 1
        self._row += n
        assert run.fields is not None  # _cut takes records only from a run parse() accepted
        return list(map(Record, range(row, row + n), range(line, line + n), run.fields[first:last], repeat(None, n)))

    def _drain(self) -> Iterator[Record]:
        """Records read line by line, until the feed runs dry or a plain run is
        next (_cut reads those)."""
        feed, reader = self._feed, self._reader
        lines = feed.lines
        while True:
            if lines and type(lines[0]) is _PlainRun and not lines[0].slow:
                return
            first = feed.line_no + 1
            fields: list[str] | None
            error: str | None
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                fields, error = None, f"malformed CSV: {exc}"
            else:
                error = None
            if feed.problems:
                error = self._problem_between(first, feed.line_no) or error
            if not fields and error is None:
                continue  # a blank line is not a record
            self._row += 1
            yield Record(self._row, first, fields, error)

    def _problem_between(self, first: int, last: int) -> str | None:
        found = None
        for line in [n for n in self._feed.problems if n <= last]:
            message = self._feed.problems.pop(line)
            if found is None and line >= first:
                found = message if line == first else f"{message} on line {line}"
        return found


class RecordCounter:
    """Counts CSV records (header included, blank lines excluded) in a byte stream
    as it passes, using the same quote-parity rule as the reader. Used while an
    upload streams in, so a job knows its total before it starts.

    Per chunk, not per line: quoted sections are collapsed in C (each becomes one
    character of content), and the lines left, each a record unless it is
    blank, are counted in C too (split, then count the blank ones), never in a
    Python loop over lines."""

    def __init__(self) -> None:
        self.records = 0
        self.in_quotes = False
        self.has_content = False  # the record being read so far has something in it

    def feed(self, chunk: bytes) -> None:
        if self.in_quotes:
            close = chunk.find(b'"')
            if close < 0:
                return
            self.in_quotes = False
            chunk = chunk[close + 1 :]
        if b'"' in chunk:
            chunk = _QUOTED.sub(b"q", chunk)
            opened = chunk.find(b'"')
            if opened >= 0:  # a quoted section that goes on into the next chunk
                self.in_quotes = True
                chunk = chunk[:opened] + b"q"
        first = chunk.find(b"\n")
        if first < 0:
            self.has_content = self.has_content or _content(chunk)
            return
        last = chunk.rfind(b"\n")
        self.records += self.has_content or _content(chunk[:first])
        if last > first:  # the lines between the first and the last newline
            lines = chunk[first + 1 : last].split(b"\n")
            self.records += len(lines) - lines.count(b"") - lines.count(b"\r")
        self.has_content = _content(chunk[last + 1 :])

    def finish(self) -> int:
        if self.has_content:
            self.records += 1
            self.has_content = False
        return self.records


_QUOTED = re.compile(rb'"[^"]*"')


def _content(piece: bytes) -> bool:
    return bool(piece) and piece != b"\r"

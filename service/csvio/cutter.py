"""Cutting an import's byte stream into the batches RecordReader would make,
without parsing them, so that other processes can parse them (JOB_WORKERS).

A batch is ``size`` records, or fewer once they span ``max_bytes`` of the file
(RecordReader.batches' rule). Records are found with one regular expression,
in C: a record is any run of unquoted characters and quoted sections ending in
a newline outside quotes (the reader's quote-parity rule), after any blank
lines. A batch's bytes, its start and its end position are known before it is
parsed, so batch k+1 can be cut, and its row numbers known, while batch k is
still being parsed elsewhere.

Files the expression does not describe exactly (a stray quote inside an
unquoted field, a lone CR, an over-long record) are caught afterwards: the
parser reports how many records the batch really held and where it ended, and
the caller falls back to reading the rest in order (``rest()`` hands back the
bytes already read)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from .records import MAX_RECORD_BYTES, READ_CHUNK, Position

# One record: blank lines (LF or CRLF), then a first character that does not make
# the line blank, then runs of unquoted characters and quoted sections up to the
# newline (written as runs, not one character at a time: six times faster in re).
_RECORD = rb'(?:\r?\n)*(?=[^\n\r]|\r(?!\n))[^\n"]*(?:"[^"]*"[^\n"]*)*\n'
RECORD = re.compile(_RECORD)
BLANK_REST = re.compile(rb"(?:\r?\n)*\Z")


@dataclass(frozen=True, slots=True)
class Segment:
    """The bytes of one batch. ``records`` and ``end`` are what the cut expects;
    both are None for the last batch (whatever is left of the file)."""

    data: bytes
    start: Position
    records: int | None
    end: Position | None


class BatchCutter:
    def __init__(self, read: Callable[[int], Awaitable[bytes]], start: Position, size: int, max_bytes: int) -> None:
        self._read = read
        self._size = size
        self._max_bytes = max_bytes
        self._batch = re.compile(b"(?:%s){%d}" % (_RECORD, size))
        self._buffer = b""
        self._pos = 0
        self._next = start
        self._eof = False
        self.irregular = False  # a batch the expression cannot cut: read the rest in order

    def position(self) -> Position:
        """Where the bytes of ``rest()`` start."""
        return self._next

    def rest(self) -> bytes:
        """The bytes read but not yet handed out in a segment."""
        return self._buffer[self._pos :]

    async def segments(self) -> AsyncIterator[Segment]:
        """Yields segments until the end of the input, or until a batch cannot be
        cut (then ``irregular`` is set and ``rest()`` starts where it begins)."""
        while True:
            end, records = self._cut()
            if end is not None:
                yield self._take(end, records)
                continue
            if self._eof:
                if not BLANK_REST.match(self._buffer, self._pos):
                    if len(self._buffer) - self._pos >= self._max_bytes:
                        self.irregular = True  # the reader may end a batch inside it
                        return
                    yield self._take(len(self._buffer), None)
                return
            if len(self._buffer) - self._pos > max(self._max_bytes, MAX_RECORD_BYTES):
                self.irregular = True  # an unclosed quote or an over-long record
                return
            await self._fill()

    def _cut(self) -> tuple[int | None, int]:
        """(end, records) of the next whole batch in the buffer, or (None, 0)."""
        buffer, pos, size = self._buffer, self._pos, self._size
        rest = buffer[pos:]
        lines = rest.split(b"\n", size)
        if len(lines) > size:
            tail = lines.pop()
            length = len(rest) - len(tail)
            # Most files are plain: no quote and no blank line in the batch's
            # lines, which are then its records. This costs a fifth of the regex.
            plain = not (lines.count(b"") or lines.count(b"\r") or rest.find(b'"', 0, length) >= 0)
            if plain and length < self._max_bytes:
                return pos + length, size
            match = self._batch.match(buffer, pos)
            if match is not None and match.end() - pos < self._max_bytes:
                return match.end(), size
        if len(rest) < self._max_bytes:
            return None, 0  # fewer lines than a batch has records: read more first
        # The byte budget may end the batch first: walk record by record.
        end, records = pos, 0
        while records < size and end - pos < self._max_bytes:
            record = RECORD.match(buffer, end)
            if record is None:
                return None, 0
            end, records = record.end(), records + 1
        return end, records

    def _take(self, end: int, records: int | None) -> Segment:
        data = self._buffer[self._pos : end]
        start = self._next
        self._pos = end
        if records is None:
            return Segment(data, start, None, None)
        self._next = Position(start.offset + len(data), start.line + data.count(b"\n"), start.row + records)
        return Segment(data, start, records, self._next)

    async def _fill(self) -> None:
        # Read at least as much as is buffered, so re-trying the cut stays linear.
        want = max(READ_CHUNK, len(self._buffer) - self._pos)
        chunk = await self._read(want)
        if not chunk:
            self._eof = True
        self._buffer = self._buffer[self._pos :] + chunk
        self._pos = 0

"""The streaming record reader and counter, on bytes in memory."""

from __future__ import annotations

import csv
import io

import pytest

from service.csvio import records
from service.csvio.records import Position, RecordCounter, RecordReader
from service.csvio.schema import parse_header

SAMPLE = (
    b"id,text,n\r\n"
    b'1,"quoted, with comma",10\r\n'
    b'2,"multi\r\nline\nfield",20\r\n'
    b"\r\n"
    b'3,"say ""hi""",30\r\n'
    b"4,\xc3\xa9t\xc3\xa9,40\r\n"
    b"5,last,50"
)


def source(data: bytes, chunk: int):
    """read(n) over ``data`` that returns at most ``chunk`` bytes at a time."""
    offset = 0

    async def read(n: int) -> bytes:
        nonlocal offset
        piece = data[offset : offset + min(n, chunk)]
        offset += len(piece)
        return piece

    return read


async def read_all(data: bytes, chunk: int, start: Position, batch: int = 2):
    reader = RecordReader(source(data[start.offset :], chunk), start)
    out, positions = [], []
    async for records_ in reader.batches(batch, 1 << 20):
        out.extend(records_)
        positions.append(reader.position())
    return out, positions


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 64, 4096])
async def test_records_are_the_same_whatever_the_chunk_boundaries(chunk):
    header = parse_header(SAMPLE, complete=True)
    got, _ = await read_all(SAMPLE, chunk, header.data_start)
    expected = list(csv.reader(io.StringIO(SAMPLE.decode(), newline="")))[1:]
    assert [r.fields for r in got] == [row for row in expected if row]
    assert [(r.row, r.line) for r in got] == [(1, 2), (2, 3), (3, 7), (4, 8), (5, 9)]
    assert all(r.error is None for r in got)


async def test_resuming_from_any_checkpoint_yields_exactly_the_remaining_records():
    header = parse_header(SAMPLE, complete=True)
    everything, positions = await read_all(SAMPLE, 5, header.data_start, batch=1)
    for i, position in enumerate(positions):
        rest, _ = await read_all(SAMPLE, 5, position, batch=1)
        assert [(r.row, r.line, r.fields) for r in rest] == [(r.row, r.line, r.fields) for r in everything[i + 1 :]]


async def test_batches_never_exceed_the_batch_size():
    data = b"a\n" + b"".join(b"%d\n" % i for i in range(1000))
    reader = RecordReader(source(data[2:], 97), Position(2, 1, 0))
    sizes = [len(b) async for b in reader.batches(64, 1 << 20)]
    assert sum(sizes) == 1000 and max(sizes) == 64


async def test_an_unclosed_quote_does_not_hold_the_rest_of_the_file_in_memory(monkeypatch):
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 1000)
    data = b'1,"never closed\n' + b"x,y\n" * 2000
    reader = RecordReader(source(data, 256), Position(0, 1, 0))
    first_batch = None
    async for batch in reader.batches(10, 1 << 20):
        first_batch = batch
        break
    assert first_batch is not None, "records are released once the record limit is passed"


async def test_an_over_long_line_is_a_row_error_and_reading_goes_on(monkeypatch):
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 100)
    data = b"1,a\n2," + b"z" * 500 + b"\n3,c\n"
    got, _ = await read_all(data, 64, Position(0, 1, 0))
    assert [(r.line, r.fields) for r in got if r.error is None] == [(2, ["1", "a"]), (4, ["3", "c"])]
    assert [(r.line, "longer than" in r.error) for r in got if r.error] == [(3, True)]


@pytest.mark.parametrize("chunk", [1, 3, 11, 1 << 16])
def test_the_counter_counts_records_not_lines(chunk):
    counter = RecordCounter()
    for i in range(0, len(SAMPLE), chunk):
        counter.feed(SAMPLE[i : i + chunk])
    assert counter.finish() == 6  # header + 5 rows; the blank line and the quoted newlines do not count


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"a", 1), (b"a\n", 1), (b"a\n\n\n", 1), (b"a\r\n\r\nb\r\n", 2), (b'a\n"x\n\ny"\nb', 3)],
)
def test_the_counter_on_edge_cases(data, expected):
    counter = RecordCounter()
    counter.feed(data)
    assert counter.finish() == expected


async def test_a_batch_ends_at_the_byte_budget_before_its_row_count():
    wide = b"id,text\n" + b"".join(b"%d,%s\n" % (i, b"x" * 1000) for i in range(1, 101))
    header = parse_header(wide, complete=True)
    reader = RecordReader(source(wide[header.data_start.offset :], 4096), header.data_start)
    sizes, positions = [], []
    async for batch in reader.batches(10_000, max_bytes=10_000):
        sizes.append(len(batch))
        positions.append(reader.position())
    # Each row is about 1,004 bytes: a batch closes with the record that reaches 10,000.
    assert sizes == [10] * 10
    assert [p.row for p in positions] == list(range(10, 101, 10))
    assert positions[-1].offset == len(wide)


async def test_the_row_count_still_ends_a_batch_of_narrow_rows():
    header = parse_header(SAMPLE, complete=True)
    reader = RecordReader(source(SAMPLE[header.data_start.offset :], 7), header.data_start)
    assert [len(b) async for b in reader.batches(2, max_bytes=1 << 20)] == [2, 2, 1]


# Runs of plain lines are read a batch at a time (records._PlainRun); around them,
# what only the line-by-line path reads: a blank line, CRLF, a stray CR (a row
# error), a quoted field over two lines, escaped quotes.
MIXED = (
    b"id,name\n"
    + b"".join(b"%d,plain %d\n" % (i, i) for i in range(1, 40))
    + b"\n40,after a blank line\r\n41,crlf\r\n42,stray\rcr\n"
    + b"".join(b"%d,plain %d\n" % (i, i) for i in range(43, 80))
    + b'80,"two\nlines"\n81,"say ""hi"""\n82,plain again\n83,"closed"\n'
    + b"".join(b"%d,plain %d\n" % (i, i) for i in range(84, 120))
)


# No quote anywhere, so a chunk's whole lines are a run however large. A run
# with a blank line or a stray CR in it is read line by line (the whole file
# read as one chunk, here); CRLF runs are read a batch at a time.
PLAIN_MIXED = (
    b"id,name\n"
    + b"".join(b"%d,plain %d\n" % (i, i) for i in range(1, 300))
    + b"\n300,after a blank line\r\n301,crlf\r\n302,stray\rcr\n"
    + b"".join(b"%d,plain %d\r\n" % (i, i) for i in range(303, 600))
)


@pytest.fixture
def runs_read(monkeypatch):
    """How many runs of plain lines were read a batch at a time."""
    read = []
    parse = records._PlainRun.parse

    def counted(self):
        ok = parse(self)
        if ok and self.at == 0:
            read.append(len(self.lines))
        return ok

    monkeypatch.setattr(records._PlainRun, "parse", counted)
    return read


def described(got):
    return [(r.row, r.line, r.fields, r.error is None) for r in got]


@pytest.mark.parametrize("chunk", [5, 64, 300, 4096, 1 << 20])
@pytest.mark.parametrize("batch, max_bytes", [(1, 1 << 20), (7, 1 << 20), (1000, 100), (1000, 1 << 20)])
@pytest.mark.parametrize("data, rows, bad_row", [(MIXED, 119, 42), (PLAIN_MIXED, 599, 302)], ids=["quotes", "no-quotes"])
async def test_plain_runs_read_in_bulk_give_the_records_and_positions_of_reading_line_by_line(
    chunk, batch, max_bytes, data, rows, bad_row, runs_read
):
    header = parse_header(data, complete=True)
    # One byte at a time, no chunk holds a whole line: every line is read on its own.
    one_by_one, _ = await read_all(data, 1, header.data_start, batch=1)
    assert len(one_by_one) == rows and [r.row for r in one_by_one if r.error] == [bad_row]
    assert not runs_read
    reader = RecordReader(source(data[header.data_start.offset :], chunk), header.data_start)
    got, positions, sizes = [], [], []
    async for records_ in reader.batches(batch, max_bytes):
        got.extend(records_)
        sizes.append(len(records_))
        positions.append(reader.position())
    assert described(got) == described(one_by_one)
    assert max(sizes) <= batch and positions[-1].offset == len(data)
    # The bulk path was taken wherever a chunk holds whole lines and no quote.
    assert bool(runs_read) == (64 <= chunk <= (4096 if data is PLAIN_MIXED else 300))
    for i, position in enumerate(positions[:-1]):
        assert position.row == sum(sizes[: i + 1])
        rest, _ = await read_all(data, chunk, position, batch=batch)
        assert described(rest) == described(got[position.row :])


@pytest.mark.parametrize(
    "data, in_bulk", [(PLAIN_MIXED, False), (PLAIN_MIXED.replace(b"\n\n", b"\n").replace(b"\rcr", b"cr"), True)]
)
async def test_a_segment_read_at_once_gives_the_records_of_reading_line_by_line(data, in_bulk, runs_read):
    """A worker's segment: with no blank line and no stray CR, its lines are
    one run read a batch at a time; otherwise line by line. Either way the
    records are those of reading line by line."""
    header = parse_header(data, complete=True)
    one_by_one, _ = await read_all(data, 1, header.data_start, batch=1)
    reader = RecordReader(source(b"", 1), header.data_start)
    records_, cut_short = reader.parse_all(data[header.data_start.offset :])
    assert bool(runs_read) == in_bulk
    assert not cut_short and described(records_) == described(one_by_one) and len(records_) == 599
    assert reader.position() == Position(len(data), 601 - in_bulk, 599)

"""Write-concern errors are failures, not successes (issue 21, finding 5).

FerretDB is a single node, so no test here can make a real server report a
write-concern error; these tests check the decision the GridFS chunk writer
takes on a BulkWriteError, with the error built as PyMongo builds it from a
server's reply, and that the chunk writer goes through that one decision."""

from __future__ import annotations

import inspect

import pytest
from pymongo.errors import BulkWriteError

from service.store.files import ChunkWriter


def bulk_error(write_errors: list[dict], concern_errors: list[dict]) -> BulkWriteError:
    return BulkWriteError(
        {
            "writeErrors": write_errors,
            "writeConcernErrors": concern_errors,
            "nInserted": 3,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
        }
    )


def test_the_chunk_writer_sends_its_inserts_through_the_shared_duplicate_and_write_concern_check():
    source = inspect.getsource(ChunkWriter._insert)
    assert "insert_new" in source and "BulkWriteError" not in source, source


def test_a_bulk_error_with_only_write_concern_errors_raises_write_concern_not_met():
    from service.store.writes import WriteConcernNotMet, check_bulk_write

    concern = {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out"}
    with pytest.raises(WriteConcernNotMet, match="waiting for replication timed out"):
        check_bulk_write(bulk_error([], [concern]))


def test_a_bulk_error_with_only_duplicate_keys_is_a_replay_and_passes():
    from service.store.writes import check_bulk_write

    duplicates = [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}, {"index": 2, "code": 11000, "errmsg": "dup"}]
    assert check_bulk_write(bulk_error(duplicates, [])) == 2


def test_a_bulk_error_with_another_write_error_is_raised_as_it_is():
    from service.store.writes import check_bulk_write

    error = bulk_error([{"index": 0, "code": 11000}, {"index": 1, "code": 2, "errmsg": "bad value"}], [])
    with pytest.raises(BulkWriteError) as raised:
        check_bulk_write(error)
    assert raised.value is error

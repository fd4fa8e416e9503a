"""Rules of the job engine that need no database: which errors are outages,
that a write-concern error is never success, what a repeated request does,
and the lease's safety margin."""

from __future__ import annotations

import pytest
from pymongo.errors import BulkWriteError, ExecutionTimeout, NetworkTimeout, OperationFailure

from service.jobs.model import ACTIONS, JobState
from service.jobs.runner import LeaseUnavailable, is_outage
from service.settings import ConfigError, Settings
from service.store.writes import WriteConcernNotMet, insert_reply_errors, raise_write_concern_errors


def test_a_bulk_write_with_a_write_concern_error_is_raised_as_an_outage():
    details = {
        "writeErrors": [],
        "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication timed out"}],
        "nInserted": 10,
    }
    with pytest.raises(WriteConcernNotMet) as raised:
        raise_write_concern_errors(BulkWriteError(details))
    assert is_outage(raised.value)
    assert "waiting for replication" in str(raised.value)


def test_a_bulk_write_with_only_duplicate_keys_is_not_a_write_concern_problem():
    raise_write_concern_errors(BulkWriteError({"writeErrors": [{"code": 11000, "index": 0}], "writeConcernErrors": []}))


def test_timeouts_and_lost_connections_are_outages_and_refusals_are_not():
    assert is_outage(NetworkTimeout("timed out"))
    assert is_outage(ExecutionTimeout("operation exceeded time limit", 50))
    assert is_outage(LeaseUnavailable("no renewal"))
    assert not is_outage(OperationFailure("document failed validation", 121))
    assert not is_outage(ValueError("a bug"))


@pytest.mark.parametrize(
    ("action", "already"),
    [("pause", {"pausing", "paused"}), ("resume", {"running"}), ("terminate", {"terminating", "terminated"})],
)
def test_a_request_that_already_took_effect_is_satisfied_not_a_conflict(action, already):
    assert {s.value for s in ACTIONS[action].satisfied} == already
    assert not ACTIONS[action].satisfied & ACTIONS[action].sources


def test_only_impossible_transitions_are_left_to_409():
    assert JobState.COMPLETED not in ACTIONS["resume"].sources | ACTIONS["resume"].satisfied
    assert JobState.TERMINATED not in ACTIONS["pause"].sources | ACTIONS["pause"].satisfied
    assert ACTIONS["resume"].sources == {JobState.PAUSING, JobState.PAUSED}, "resume cancels a pause not yet taken"


def test_the_lease_margin_is_a_third_of_the_lease_and_leaves_room_for_two_renewals():
    assert Settings(job_lease_seconds=15).lease_margin_seconds == 5
    assert Settings(job_lease_seconds=2).lease_margin_seconds == 1
    with pytest.raises(ConfigError, match="JOB_LEASE_SECONDS"):
        Settings.from_env({"JOB_LEASE_SECONDS": "2", "JOB_POLL_SECONDS": "1"})
    Settings.from_env({"JOB_LEASE_SECONDS": "6", "JOB_POLL_SECONDS": "1"})


def test_fault_points_are_read_only_in_their_documented_form():
    assert Settings.from_env({"COLLECT_JOBS_FAULTS": "import.rollback, teams.rollback"}).faults == {
        "import.rollback",
        "teams.rollback",
    }
    with pytest.raises(ConfigError, match="COLLECT_JOBS_FAULTS"):
        Settings.from_env({"COLLECT_JOBS_FAULTS": "everything"})


def test_an_insert_reply_with_a_write_concern_error_is_raised_as_an_outage():
    # The shape MongoDB documents for the insert command's reply.
    reply = {"ok": 1, "n": 10, "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}}
    with pytest.raises(WriteConcernNotMet) as raised:
        insert_reply_errors(reply)
    assert is_outage(raised.value)


def test_an_insert_reply_drops_duplicate_keys_and_shifts_the_other_errors_to_the_batch():
    reply = {
        "ok": 1,
        "n": 1,
        "writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup"}, {"index": 2, "code": 2, "errmsg": "bad"}],
    }
    assert insert_reply_errors(reply, offset=100) == [{"index": 102, "code": 2, "errmsg": "bad"}]


def test_the_state_diagram_in_the_docs_is_the_transition_table():
    from pathlib import Path

    from service.jobs.states import mermaid

    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    block = text.split("<!-- states:begin -->")[1].split("<!-- states:end -->")[0]
    assert block.strip() == f"```mermaid\n{mermaid()}\n```", "regenerate the diagram in docs/engine.md from states.py"


def test_every_transition_in_the_code_is_one_of_the_table():
    from service.jobs.states import TRANSITIONS, USER_TRANSITIONS

    assert set(USER_TRANSITIONS.values()) == {t for t in TRANSITIONS if t.by == "user"}
    assert len({t.name for t in TRANSITIONS}) == len(TRANSITIONS)


def test_undo_is_a_users_transition_from_completed_whose_rollback_ends_undone():
    from service.jobs.states import FINISHED, NEEDS_RUNNER, ROLLBACK_END, ROLLING_BACK, UNDO, USER_TRANSITIONS, mermaid

    assert USER_TRANSITIONS["undo"] is UNDO and UNDO.by == "user"
    assert UNDO.sources == {JobState.COMPLETED} and UNDO.target is JobState.UNDOING
    assert UNDO.satisfied == {JobState.UNDOING, JobState.UNDONE}
    assert "undo" not in ACTIONS, "undo has its own route, with a dry run and a window"
    assert ROLLING_BACK == {JobState.TERMINATING, JobState.UNDOING} <= NEEDS_RUNNER
    assert ROLLBACK_END[JobState.UNDOING].target is JobState.UNDONE and JobState.UNDONE in FINISHED
    assert "completed --> undoing: undo (user)" in mermaid() and "undoing --> undone: undone (runner)" in mermaid()

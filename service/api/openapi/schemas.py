"""The JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of what the API sends
and receives. Enumerations come from the code (job states, job kinds), so a
new state or kind cannot leave the document behind."""

from __future__ import annotations

from typing import Any

from ...jobs.kinds import KINDS
from ...jobs.model import JobState
from ..exports import EXPORT_BATCH
from ..exports import MAX_BATCH as MAX_EXPORT_BATCH

# The jobs a waiting job waits for (its ``queue`` or ``waiting``), with their states.
HOLDERS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "state"],
        "properties": {"id": {"type": "string"}, "state": {"type": "string"}},
    },
}


NULLABLE_STRING = {"type": ["string", "null"]}
DATE_TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
DATASET = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", "example": "visits"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schemas() -> dict[str, Any]:
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; every error of the API.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "description": "urn:problem:collect-jobs:<slug>"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string", "description": "the request's path"},
                "parameter": {"type": "string", "description": "the query parameter, header or field at fault"},
                "unknown": {"type": "array", "items": {"type": "string"}, "description": "unknown query parameters"},
                "state": {"type": "string", "description": "the job's state, for a 409"},
                "accepted": {"type": "array", "items": {"type": "string"}, "description": "accepted content types, for a 415"},
                "limit": {"type": "integer", "description": "the size limit, for a 413"},
                "error_id": {"type": "string", "description": "for a 5xx: the id of the server's log line with the detail"},
            },
        },
        "RowError": {
            "type": "object",
            "required": ["line", "message"],
            "properties": {
                "line": {"type": ["integer", "null"], "description": "line in the file; the header is line 1"},
                "row": {"type": ["integer", "null"], "description": "1-based data row"},
                "kind": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "Progress": {
            "type": "object",
            "description": "Counters of the job's work; which ones appear depends on its kind.",
            "properties": {
                "processed": COUNT,
                "total": {"type": ["integer", "null"], "minimum": 0},
                "inserted": COUNT,
                "failed": COUNT,
                "percent": {"type": "number", "minimum": 0},
                "rows_per_second": {"type": "number", "minimum": 0},
                "bytes": COUNT,
                "rolled_back": COUNT,
                "teams_created": COUNT,
                "users_created": COUNT,
                "users_updated": COUNT,
                "users_restored": COUNT,
                "users_deleted": COUNT,
                "teams_deleted": COUNT,
                "users_kept": COUNT,
                "failed_by_kind": {"type": "object", "additionalProperties": COUNT},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "kind", "state", "org_id", "params", "progress", "errors", "links", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string", "enum": sorted(KINDS)},
                "state": {"type": "string", "enum": [s.value for s in JobState]},
                "org_id": {"type": "string"},
                "params": {"type": "object", "description": "the request as the job keeps it; depends on the kind"},
                "progress": ref("Progress"),
                "errors": {"type": "array", "items": ref("RowError"), "description": "the first row errors"},
                "error": {**NULLABLE_STRING, "description": "why the job failed"},
                "owner": {**NULLABLE_STRING, "description": "the replica running it"},
                "created_at": DATE_TIME,
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "result": {"type": "object"},
                "undoable": {"type": "boolean", "description": "a completed import or teams job that POST .../undo accepts now"},
                "undo_ended": {"type": ["object", "null"], "description": "why it can no longer be undone, and when"},
                "queue": {
                    "type": "object",
                    "description": "a queued job only: why it waits and its place among its org's queued jobs of its kind "
                    "(worked out when read; nothing is stored)",
                    "required": ["position", "of", "waiting_for", "reason", "holders"],
                    "properties": {
                        "position": {"type": "integer", "minimum": 1, "description": "1: the next of its org and kind to start"},
                        "of": {"type": "integer", "minimum": 1, "description": "the org's queued jobs of this kind"},
                        "waiting_for": {
                            "type": "string",
                            "enum": ["org_slot", "older_jobs", "process_slot"],
                            "description": "org_slot: the org's limit for the kind (MAX_IMPORTS_PER_ORG; 1 teams job) is "
                            "held by the holders; older_jobs: older queued jobs of the org start first; process_slot: "
                            "every replica runs MAX_RUNNING_JOBS jobs",
                        },
                        "reason": {"type": "string", "description": "the same, in words, naming the holders and their states"},
                        "holders": HOLDERS,
                        "limit": {"type": ["integer", "null"], "description": "the org's limit for the kind, if any"},
                    },
                },
                "waiting": {
                    "type": "object",
                    "description": "a terminating or undoing job that no replica runs yet: it waits for its org's slot "
                    "of its kind, so that it never runs beside the org's next job of that kind (worked out when read)",
                    "required": ["waiting_for", "reason", "holders", "limit"],
                    "properties": {
                        "waiting_for": {"type": "string", "enum": ["org_slot"]},
                        "reason": {"type": "string", "description": "the same, in words, naming the holders and their states"},
                        "holders": HOLDERS,
                        "limit": {"type": "integer", "description": "the org's limit for the kind"},
                    },
                },
                "rollback": {
                    "type": "object",
                    "description": "a rollback that has failed at least once: its attempts, last error, since when it "
                    "has been failing without progress, and whether the job still holds its org's slot",
                    "properties": {
                        "error": NULLABLE_STRING,
                        "attempts": {"type": "integer", "minimum": 0},
                        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                        "failing_since": {"type": ["string", "null"], "format": "date-time"},
                        "slot_released": {"type": "boolean"},
                    },
                },
                "links": {
                    "type": "object",
                    "required": ["self"],
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "next"],
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "next": {**NULLABLE_STRING, "description": "the next page, or null"},
            },
        },
        "ExportRequest": {
            "type": "object",
            "required": ["dataset"],
            "additionalProperties": False,
            "properties": {
                "dataset": DATASET,
                "date_field": {**NULLABLE_STRING, "description": "a column imported as a date"},
                "from": {**NULLABLE_STRING, "description": "ISO 8601 date or datetime, inclusive"},
                "to": {**NULLABLE_STRING, "description": "ISO 8601 date or datetime, exclusive"},
                "fields": {
                    "type": ["array", "null"],
                    "items": {"type": "string", "minLength": 1},
                    "maxItems": 1000,
                    "description": "the columns, in order (null or empty: all)",
                },
                "neutralize_formulas": {"type": "boolean", "default": True},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_EXPORT_BATCH, "default": EXPORT_BATCH},
            },
        },
        "ExportPreview": {
            "type": "object",
            "required": [
                "dry_run",
                "dataset",
                "columns",
                "rows_in_range",
                "exact",
                "counted",
                "rows_read",
                "first_rows",
                "first_rows_complete",
                "estimate",
            ],
            "properties": {
                "dry_run": {"const": True},
                "dataset": DATASET,
                "columns": {"type": "array", "items": {"type": "string"}},
                "rows_in_range": {**COUNT, "description": "the rows the export would write"},
                "exact": {
                    "type": "boolean",
                    "description": "false: estimated from windows of the dataset (a date filter the database could not count within 2 s)",
                },
                "counted": {"type": "string", "description": "how rows_in_range was found"},
                "rows_read": {**COUNT, "description": "the rows the export reads (every row of the dataset's imports)"},
                "first_rows": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "string"}},
                    "description": "the first 10 rows in range, as the CSV cells the export writes",
                },
                "first_rows_complete": {
                    "type": "boolean",
                    "description": "false: the search for the first rows stopped after 3 s",
                },
                "estimate": {
                    "type": "object",
                    "properties": {
                        "bytes": COUNT,
                        "seconds": {"type": ["number", "null"]},
                        "rows_per_second": {"type": ["integer", "null"]},
                    },
                },
                "preview_seconds": {"type": "number"},
            },
        },
        "DownloadRequest": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["export"],
                    "additionalProperties": False,
                    "properties": {"export": ref("ExportRequest")},
                },
                {
                    "type": "object",
                    "required": ["job_id"],
                    "additionalProperties": False,
                    "properties": {"job_id": {"type": "string", "minLength": 1, "description": "a completed background export"}},
                },
            ]
        },
        "DownloadTicket": {
            "type": "object",
            "required": ["url", "kind", "filename", "expires_at"],
            "properties": {
                "url": {"type": "string", "description": "GET it once, without a bearer header"},
                "kind": {"type": "string", "enum": ["export", "result"]},
                "filename": {"type": "string"},
                "expires_at": DATE_TIME,
                "job_id": {"type": "string"},
            },
        },
        "TeamsDryRun": {
            "type": "object",
            "required": ["dry_run", "rows", "valid_rows", "would_create", "would_change", "errors", "warnings", "shift"],
            "properties": {
                "dry_run": {"const": True},
                "rows": COUNT,
                "valid_rows": COUNT,
                "would_create": {"type": "object", "properties": {"teams": COUNT, "users": COUNT}},
                "would_change": {"type": "object", "properties": {"users": COUNT}},
                "preview": {"type": "array", "items": {"type": "object"}},
                "errors": ref("Findings"),
                "warnings": ref("Findings"),
                "shift": {"type": "object", "required": ["suspected"], "properties": {"suspected": {"type": "boolean"}}},
                "cross_row_checks": {"type": "string"},
            },
        },
        "Findings": {
            "type": "object",
            "required": ["count", "by_kind", "first"],
            "properties": {
                "count": COUNT,
                "by_kind": {"type": "object", "additionalProperties": COUNT},
                "first": {"type": "array", "items": {"type": "object"}},
            },
        },
        "UndoDryRun": {
            "type": "object",
            "required": ["dry_run", "job_id", "kind", "state", "undoable", "refused", "would"],
            "properties": {
                "dry_run": {"const": True},
                "job_id": {"type": "string"},
                "kind": {"type": "string", "enum": sorted(KINDS)},
                "state": {"type": "string", "enum": [s.value for s in JobState]},
                "undoable": {"type": "boolean", "description": "whether an undo would be accepted now"},
                "refused": {**NULLABLE_STRING, "description": "why not (the 409 an undo would get)"},
                "undo_until": {"type": ["string", "null"], "format": "date-time"},
                "would": {
                    "type": "object",
                    "description": "import: rows (deleted), inserted, deleted_since (by another writer), changed_since "
                    "(null: not known cheaply); teams: teams (deleted), users_restored, users_deleted, users_kept",
                    "additionalProperties": {"type": ["integer", "string", "null"]},
                },
            },
        },
        "BulkRequest": {
            "type": "object",
            "required": ["filter"],
            "additionalProperties": False,
            "properties": {
                "filter": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "every field narrows; {} is every job of your organisation",
                    "properties": {
                        "ids": {
                            "oneOf": [
                                {"type": "string", "pattern": "^[0-9a-f]{24}$"},
                                {
                                    "type": "array",
                                    "items": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
                                    "minItems": 1,
                                    "maxItems": 1000,
                                },
                            ]
                        },
                        "kind": {
                            "oneOf": [
                                {"type": "string", "enum": sorted(KINDS)},
                                {"type": "array", "items": {"type": "string", "enum": sorted(KINDS)}, "minItems": 1},
                            ]
                        },
                        "state": {
                            "oneOf": [
                                {"type": "string", "enum": [s.value for s in JobState]},
                                {
                                    "type": "array",
                                    "items": {"type": "string", "enum": [s.value for s in JobState]},
                                    "minItems": 1,
                                },
                            ]
                        },
                        "dataset": DATASET,
                        "created_by": {"type": "string", "minLength": 1, "description": "an actor: a JWT sub or key:<id>"},
                        "created_after": {**DATE_TIME, "description": "inclusive"},
                        "created_before": {**DATE_TIME, "description": "exclusive"},
                    },
                },
                "reason": {"type": "string", "maxLength": 1000},
                "after": {"type": "string", "pattern": "^[0-9a-f]{24}$", "description": "next of the previous answer"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
            },
        },
        "BulkResult": {
            "type": "object",
            "required": [
                "action",
                "dry_run",
                "matched",
                "changed",
                "already",
                "refused",
                "refused_states",
                "changed_kinds",
                "jobs",
                "next",
            ],
            "properties": {
                "action": {"type": "string", "enum": ["pause", "resume", "terminate"]},
                "dry_run": {"type": "boolean"},
                "matched": COUNT,
                "changed": {**COUNT, "description": "jobs this request moved (with dry_run: would move)"},
                "already": {**COUNT, "description": "jobs already where the action leads"},
                "refused": {**COUNT, "description": "jobs whose state does not allow the action"},
                "refused_states": {"type": "object", "additionalProperties": COUNT},
                "changed_kinds": {"type": "object", "additionalProperties": COUNT},
                "jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "kind", "before", "after", "outcome"],
                        "properties": {
                            "id": {"type": "string"},
                            "kind": {"type": "string"},
                            "before": {"type": "string"},
                            "after": NULLABLE_STRING,
                            "outcome": {"type": "string", "enum": ["changed", "already", "refused"]},
                        },
                    },
                },
                "next": {**NULLABLE_STRING, "description": "more may match: send the same body with after set to this"},
            },
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }

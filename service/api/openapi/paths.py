"""Every route of the API, as OpenAPI 3.1 path items. A new route adds its
entry here (tests/integration/test_openapi.py fails until it does)."""

from __future__ import annotations

from typing import Any

from ...audit import ACTIONS as AUDIT_ACTIONS
from ...csvio.schema import TYPE_NAMES
from ...jobs.kinds import KINDS
from ...jobs.model import JobState
from ..exports import EXPORT_BATCH
from ..exports import MAX_BATCH as MAX_EXPORT_BATCH
from ..imports import IMPORT_BATCH
from ..imports import MAX_BATCH as MAX_IMPORT_BATCH
from ..teams import MAX_BATCH as MAX_TEAMS_BATCH
from ..teams import TEAMS_BATCH
from .schemas import DATASET, ref

PROBLEMS = {
    400: ("BadRequest", "The request is not valid: a bad or unknown parameter, a malformed body."),
    401: ("Unauthorized", "No valid bearer token (a JWT of the identity provider, or an API key); WWW-Authenticate says so."),
    403: ("Forbidden", "The caller's role is too low for this (the body names the role needed)."),
    404: ("NotFound", "No such resource in your organisation."),
    408: ("RequestTimeout", "An upload sent nothing for UPLOAD_IDLE_SECONDS; the part received is not kept."),
    409: ("Conflict", "The resource's state does not allow this (the body names the state)."),
    410: ("Gone", "The resource existed but is no longer available."),
    413: (
        "PayloadTooLarge",
        "The body is over MAX_UPLOAD_BYTES or, with the org's other uploads, MAX_UPLOAD_BYTES_PER_ORG (an upload), or 256 KiB (a JSON body).",
    ),
    415: (
        "UnsupportedMediaType",
        "The body's content type is not accepted (the body lists those that are), or it has a Content-Encoding other than identity.",
    ),
    416: ("RangeNotSatisfiable", "The byte range is past the end of the file."),
    422: ("IdempotencyKeyReused", "This Idempotency-Key was used for a different request."),
    429: ("TooManyRequests", "A limit of your organisation or of this replica is reached; retry after Retry-After seconds."),
    503: ("Unavailable", "The database does not answer, or the service is shutting down; retry."),
}
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")


def problem_responses() -> dict[str, Any]:
    return {
        name: {"description": text, "content": {"application/problem+json": {"schema": ref("Problem")}}}
        for name, text in PROBLEMS.values()
    }


def errors(*statuses: int) -> dict[str, Any]:
    """The problem+json responses of an operation: those named, plus 400 (any
    endpoint rejects unknown query parameters), 401 and 403 (every /api route
    needs a token and a role) and 503 (the database)."""
    return {str(s): {"$ref": f"#/components/responses/{PROBLEMS[s][0]}"} for s in sorted({400, 401, 403, 503, *statuses})}


def query(name: str, description: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or {"type": "string"}, **extra}


def boolean(name: str, description: str) -> dict[str, Any]:
    return query(
        name, f"{description} (true/false, 1/0 or yes/no; anything else is a 400)", {"type": "boolean", "default": False}
    )


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Retry safely: the same key and the same request within 24 h answer with the job (or ticket) "
    "created the first time, marked Idempotent-Replayed: true; the same key with another request is a 422.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
ON_ERROR = query(
    "on_error",
    "skip bad rows (row errors) or fail at the first one",
    {"type": "string", "enum": ["skip", "fail"], "default": "skip"},
)
MAX_ERRORS = query(
    "max_errors",
    "with skip, fail once more rows than this have failed",
    {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 1000},
)
JOB_LINKS = {
    action: {"operationId": f"{action}Job", "parameters": {"job_id": "$response.body#/id"}}
    for action in ("get", "pause", "resume", "terminate", "retry", "undo")
}
REASON_BODY = {
    "required": False,
    "description": "empty, or a reason kept in the audit trail",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"reason": {"type": "string", "maxLength": 1000}},
            }
        }
    },
}


# Each server-sent event (OpenAPI 3.1: the schema describes one event).
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["job", "end"]},
        "data": {"type": "string", "description": 'job: the job\'s JSON; end: {"state": ...}'},
        "id": {"type": "string"},
    },
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def job_created(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Location": {"schema": {"type": "string"}, "description": "the job's URL"}},
        "content": json_content(ref("Job")),
        "links": JOB_LINKS,
    }


def _list(values: list[str]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "enum": values}}


def csv_upload(description: str, example: str) -> dict[str, Any]:
    raw = {t: {"schema": {"type": "string", "minLength": 1}, "example": example} for t in CSV_TYPES}
    form = {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "contentMediaType": "text/csv"}},
        }
    }
    return {"required": True, "description": description, "content": {**raw, "multipart/form-data": form}}


def csv_download(description: str, **headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            name.replace("_", "-"): {"schema": {"type": "string"}, "description": text} for name, text in headers.items()
        },
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }


# A stored result's single byte range, and the validator that says it is still the same file.
RANGE_HEADERS = [
    {"name": "Range", "in": "header", "schema": {"type": "string"}, "description": "bytes=first-last"},
    {
        "name": "If-Range",
        "in": "header",
        "schema": {"type": "string"},
        "description": "the ETag of an earlier response: the range is sent only if the file is still that one (else 200 and the whole file)",
    },
]

EXPORT_QUERY = [
    query("date_field", "a column imported as a date, to filter on"),
    query("from", "ISO 8601 date or datetime, inclusive"),
    query("to", "ISO 8601 date or datetime, exclusive"),
    query("fields", "the columns to export, comma-separated (default: all)"),
    boolean("neutralize_formulas", "prefix cells starting with = + - @ tab or CR with ' (default true)")
    | {"schema": {"type": "boolean", "default": True}},
    query("batch_size", "rows per read", {"type": "integer", "minimum": 1, "maximum": MAX_EXPORT_BATCH, "default": EXPORT_BATCH}),
]


def job_action(action: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{action}Job",
            "tags": ["jobs"],
            "summary": summary,
            "parameters": [JOB_ID],
            "responses": {
                "200": {"description": "the job", "content": json_content(ref("Job"))},
                **errors(404, 409, 413, 415, *((429,) if action == "retry" else ())),
            },
        }
    }


def bulk_action(action: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"bulk{action.capitalize()}Jobs",
            "tags": ["jobs"],
            "summary": summary,
            "description": "Every job of your organisation that matches the filter, each through the same guarded "
            "transition as the single request; at most `limit` (1,000) jobs per request, oldest first, `next` "
            "continues (send the same body with `after`). Needs operator. One audit event lists every job changed.",
            "parameters": [boolean("dry_run", "count what would change, change nothing")],
            "requestBody": {"required": True, "content": json_content(ref("BulkRequest"))},
            "responses": {
                "200": {"description": "what was done", "content": json_content(ref("BulkResult"))},
                **errors(413, 415),
            },
        }
    }


def paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["probes"],
                "summary": "Liveness: the event loop answers (never the database)",
                "responses": {"200": {"description": "alive", "content": json_content(ref("Status"))}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["probes"],
                "summary": "Readiness: the database answers and the process admits work",
                "responses": {"200": {"description": "ready", "content": json_content(ref("Status"))}, **errors()},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["probes"],
                "summary": "Prometheus text exposition of this replica",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["docs"],
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": json_content({"type": "object"})}, **errors()},
            }
        },
        "/": {
            "get": {
                "operationId": "console",
                "tags": ["docs"],
                "summary": "The browser console (its scripts and styles are under /console/)",
                "responses": {
                    "200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                    "304": {"description": "not modified (If-None-Match)"},
                },
            }
        },
        "/api/v1/docs": {
            "get": {
                "operationId": "docs",
                "tags": ["docs"],
                "summary": "The document, for people (Swagger UI)",
                "responses": {
                    "200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                    **errors(),
                },
            }
        },
        "/api/v1/jobs/import": {
            "post": {
                "operationId": "createImport",
                "tags": ["jobs"],
                "summary": "Import a CSV into a dataset",
                "description": "The body is streamed into storage; 202 once it is stored and its header checked.",
                "parameters": [
                    query("dataset", "the dataset to import into", DATASET, required=True),
                    query("types", f"col:type,... with type one of {', '.join(TYPE_NAMES)}", example="visited:date"),
                    query(
                        "batch_size",
                        "rows per insert",
                        {"type": "integer", "minimum": 1, "maximum": MAX_IMPORT_BATCH, "default": IMPORT_BATCH},
                    ),
                    ON_ERROR,
                    MAX_ERRORS,
                    boolean("dry_run", "read the file, write nothing, answer 200 with what the import would find"),
                    query("null_values", "cell values that mean null, comma-separated"),
                    query(
                        "guard",
                        "what a file unlike the dataset's profile does",
                        {"type": "string", "enum": ["off", "warn", "pause"], "default": "warn"},
                    ),
                    query(
                        "header",
                        "match: the header must be the dataset's columns",
                        {"type": "string", "enum": ["any", "match"], "default": "any"},
                    ),
                    IDEMPOTENCY_KEY,
                ],
                "requestBody": csv_upload(
                    "the CSV: the raw body, or the multipart/form-data field 'file'", "id,visited\n1,2017-08-03\n2,2017-09-14\n"
                ),
                "responses": {
                    "200": {"description": "the dry run's findings", "content": json_content({"type": "object"})},
                    "202": job_created("the import job, queued"),
                    **errors(409, 413, 415, 422, 429),
                },
            }
        },
        "/api/v1/jobs/teams": {
            "post": {
                "operationId": "createTeams",
                "tags": ["jobs"],
                "summary": "Create teams from a sheet, or review it (dry_run)",
                "parameters": [
                    boolean("dry_run", "check every row, write nothing, answer 200 with what would happen"),
                    query("region", "how to read phone numbers without +country (US, GB, DE, ...)"),
                    query(
                        "batch_size",
                        "rows per batch",
                        {"type": "integer", "minimum": 1, "maximum": MAX_TEAMS_BATCH, "default": TEAMS_BATCH},
                    ),
                    ON_ERROR,
                    MAX_ERRORS,
                    IDEMPOTENCY_KEY,
                ],
                "requestBody": csv_upload(
                    "the sheet: team, manager_name, manager_phone[, members]",
                    "team,manager_name,manager_phone,members\nBlue,Ann Lee,+12015550101,+12025550102\n",
                ),
                "responses": {
                    "200": {"description": "the dry run's findings", "content": json_content(ref("TeamsDryRun"))},
                    "202": job_created("the teams job, queued"),
                    **errors(409, 413, 415, 422, 429),
                },
            }
        },
        "/api/v1/jobs/export": {
            "post": {
                "operationId": "createExport",
                "tags": ["jobs"],
                "summary": "Export a dataset (filtered) into a stored CSV, in the background, or preview it (dry_run)",
                "parameters": [
                    IDEMPOTENCY_KEY,
                    boolean(
                        "dry_run",
                        "answer 200 with the rows in range, the first rows and estimates of size and time; create nothing",
                    ),
                ],
                "requestBody": {"required": True, "content": json_content(ref("ExportRequest"))},
                "responses": {
                    "200": {"description": "the preview (dry_run=true)", "content": json_content(ref("ExportPreview"))},
                    "202": job_created("the export job, queued"),
                    **errors(404, 409, 413, 415, 422, 429),
                },
            }
        },
        "/api/v1/exports/{dataset}.csv": {
            "post": {
                "operationId": "streamExport",
                "tags": ["downloads"],
                "summary": "Stream an export straight into the response (curl -X POST ... -o out.csv)",
                "description": "A job like the others (X-Job-Id): pause stalls the stream, terminate aborts it. "
                "Takes no body and no Idempotency-Key (a stream cannot be replayed).",
                "parameters": [{"name": "dataset", "in": "path", "required": True, "schema": DATASET}, *EXPORT_QUERY],
                "responses": {"200": csv_download("the CSV, chunked", X_Job_Id="the export job's id"), **errors(404, 415, 429)},
            }
        },
        "/api/v1/downloads": {
            "post": {
                "operationId": "createDownload",
                "tags": ["downloads"],
                "summary": "A single-use download ticket, for a browser",
                "description": "The ticket's URL needs no bearer header, works once, and expires after 5 minutes.",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": json_content(ref("DownloadRequest"))},
                "responses": {
                    "201": {
                        "description": "the ticket",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": json_content(ref("DownloadTicket")),
                        "links": {
                            "download": {
                                "operationId": "download",
                                "parameters": {"ticket": "$response.header.Location#regex:/api/v1/downloads/(.+)"},
                            }
                        },
                    },
                    **errors(404, 409, 410, 413, 415, 422),
                },
            }
        },
        "/api/v1/downloads/{ticket}": {
            "get": {
                "operationId": "download",
                "tags": ["downloads"],
                "summary": "Redeem a ticket: the export streams, or the stored result is sent",
                "security": [],
                "parameters": [{"name": "ticket", "in": "path", "required": True, "schema": {"type": "string"}}, *RANGE_HEADERS],
                "responses": {
                    "200": csv_download("the CSV", X_Job_Id="for a streamed export, its job's id", ETag="a stored result's file"),
                    "206": csv_download(
                        "the requested range of a stored result: a broken download resumes on its ticket until it expires",
                        Content_Range="bytes first-last/length",
                        ETag="the stored result's file",
                    ),
                    **errors(404, 409, 410, 416, 429),
                },
            }
        },
        "/api/v1/datasets/{dataset}": {
            "get": {
                "operationId": "getDataset",
                "tags": ["jobs"],
                "summary": "The columns and types of the dataset's latest completed import",
                "description": "What the import form pre-selects each column's type from.",
                "parameters": [{"name": "dataset", "in": "path", "required": True, "schema": DATASET}],
                "responses": {
                    "200": {
                        "description": "the dataset as its latest import described it",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["dataset", "columns", "types", "latest_import", "imports_kept"],
                                "properties": {
                                    "dataset": DATASET,
                                    "columns": {"type": "array", "items": {"type": "string"}},
                                    "types": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                        "description": "column -> type spec (int, date, date:%d/%m/%Y, ...)",
                                    },
                                    "latest_import": {"type": "object"},
                                    "imports_kept": {"type": "integer", "minimum": 1},
                                },
                            }
                        ),
                    },
                    **errors(404),
                },
            }
        },
        "/api/v1/me": {
            "get": {
                "operationId": "me",
                "tags": ["access"],
                "summary": "Who is asking: org, actor, role and how they signed in",
                "responses": {
                    "200": {
                        "description": "the caller",
                        "content": json_content({"type": "object", "required": ["org_id", "actor", "role", "method"]}),
                    },
                    **errors(),
                },
            }
        },
        "/api/v1/api-keys": {
            "post": {
                "operationId": "createApiKey",
                "tags": ["access"],
                "summary": "Create an API key (admin); the secret is shown once",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}],
                "requestBody": {
                    "required": True,
                    "content": json_content(
                        {
                            "type": "object",
                            "required": ["name", "role"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                                "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
                                "expires_at": {"type": ["string", "null"], "format": "date-time"},
                            },
                            "additionalProperties": False,
                        }
                    ),
                },
                "responses": {
                    "201": {"description": "the key, with its secret", "content": json_content({"type": "object"})},
                    **errors(409, 413, 415, 422),
                },
            },
            "get": {
                "operationId": "listApiKeys",
                "tags": ["access"],
                "summary": "The organisation's API keys, without secrets (admin)",
                "responses": {
                    "200": {"description": "the keys", "content": json_content({"type": "object", "required": ["api_keys"]})},
                    **errors(),
                },
            },
        },
        "/api/v1/api-keys/{key_id}": {
            "delete": {
                "operationId": "revokeApiKey",
                "tags": ["access"],
                "summary": "Revoke an API key (admin): refused on every replica at once",
                "parameters": [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the revoked key", "content": json_content({"type": "object"})},
                    **errors(404),
                },
            }
        },
        "/api/v1/audit": {
            "get": {
                "operationId": "listAuditEvents",
                "tags": ["access"],
                "summary": "Audit events, newest first (admin)",
                "parameters": [
                    query("job_id", "a job's events"),
                    query("actor", "a JWT sub or key:<id>"),
                    query("action", "what was done", {"type": "string", "enum": list(AUDIT_ACTIONS)}),
                    query("since", "ISO 8601 date or datetime", {"type": "string", "format": "date-time"}),
                    query("before", "an event id, from next", {"type": "string", "pattern": "^[0-9a-f]{24}$"}),
                    query("limit", "1-500, default 100", {"type": "integer", "minimum": 1, "maximum": 500}),
                ],
                "responses": {
                    "200": {"description": "a page of events", "content": json_content({"type": "object"})},
                    **errors(),
                },
            }
        },
        "/api/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "tags": ["jobs"],
                "summary": "Jobs of your organisation, newest first",
                "parameters": [
                    query("state", "states, repeated or comma-separated", _list([s.value for s in JobState]), explode=True),
                    query("kind", "kinds, repeated or comma-separated", _list(sorted(KINDS)), explode=True),
                    query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                    query("before", "a job id: the page after it (follow next)"),
                ],
                "responses": {"200": {"description": "a page of jobs", "content": json_content(ref("JobList"))}, **errors()},
            }
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "tags": ["jobs"],
                "summary": "A job: state, progress, first row errors",
                "parameters": [JOB_ID],
                "responses": {"200": {"description": "the job", "content": json_content(ref("Job"))}, **errors(404)},
            },
            "delete": {
                "operationId": "deleteJob",
                "tags": ["jobs"],
                "summary": "Delete a finished job and its result file at once (terminated jobs, completed exports and teams jobs)",
                "parameters": [JOB_ID],
                "responses": {"204": {"description": "deleted"}, **errors(404, 409)},
            },
        },
        "/api/v1/jobs/{job_id}/events": {
            "get": {
                "operationId": "jobEvents",
                "tags": ["jobs"],
                "summary": "Server-sent events: the job each time it changes, then end",
                "parameters": [
                    JOB_ID,
                    query(
                        "interval_ms", "how often to look", {"type": "integer", "minimum": 50, "maximum": 60000, "default": 500}
                    ),
                ],
                "responses": {
                    "200": {"description": "an event stream", "content": {"text/event-stream": {"schema": SSE_EVENT}}},
                    **errors(404, 429),
                },
            }
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                "operationId": "jobResult",
                "tags": ["downloads"],
                "summary": "The stored CSV of a completed background export (single byte ranges supported)",
                "parameters": [JOB_ID, *RANGE_HEADERS],
                "responses": {
                    "200": csv_download("the CSV", Content_Disposition="attachment; filename=...", ETag="the stored file"),
                    "206": csv_download("the requested range", Content_Range="bytes first-last/length", ETag="the stored file"),
                    **errors(404, 409, 410, 416),
                },
            }
        },
        "/api/v1/jobs/{job_id}/pause": job_action("pause", "Pause at the next checkpoint"),
        "/api/v1/jobs/{job_id}/resume": job_action("resume", "Resume from the checkpoint"),
        "/api/v1/jobs/{job_id}/terminate": job_action("terminate", "Stop and roll back everything the job wrote"),
        "/api/v1/jobs/{job_id}/retry": job_action("retry", "Queue a failed job again, from its checkpoint"),
        "/api/v1/jobs/{job_id}/undo": {
            "post": {
                "operationId": "undoJob",
                "tags": ["jobs"],
                "summary": "Undo a completed import or teams job (the terminate's rollback; ends undone)",
                "description": "Within JOB_UNDO_DAYS of completion. A 409 names the reason when the job's kind, state "
                "or age does not allow it. With dry_run=true: what an undo would remove, nothing written.",
                "parameters": [JOB_ID, boolean("dry_run", "answer what an undo would remove or restore, write nothing")],
                "requestBody": REASON_BODY,
                "responses": {
                    "200": {
                        "description": "the job (undoing), or the dry run",
                        "content": json_content({"oneOf": [ref("Job"), ref("UndoDryRun")]}),
                    },
                    **errors(404, 409, 413, 415),
                },
            }
        },
        "/api/v1/jobs/pause": bulk_action("pause", "Pause every matching running job"),
        "/api/v1/jobs/resume": bulk_action("resume", "Resume every matching pausing or paused job"),
        "/api/v1/jobs/terminate": bulk_action("terminate", "Terminate (roll back) every matching job"),
    }

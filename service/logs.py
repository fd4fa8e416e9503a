"""Logging set-up: one JSON object per line (LOG_FORMAT=json, for collectors)
or plain text (LOG_FORMAT=text, for a terminal), and job fields on every line a
job writes.

A runner binds its job to the asyncio task it runs in (``bind_job``); a filter
on the handler then adds ``job_id``, ``org_id``, ``kind`` and ``state`` to every
record logged from that task and the tasks it starts, whichever module logs it
(the runner, a job kind, the driver's errors). ``JobLogger`` is the same as a
LoggerAdapter, for code that logs about a job from outside its task."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

JOB_FIELDS = ("job_id", "org_id", "kind", "state")
# Attributes every LogRecord has; anything else on a record is an extra field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

_job: contextvars.ContextVar[tuple[dict[str, Any], Callable[[], str]] | None] = contextvars.ContextVar(
    "collect_jobs_job", default=None
)


def bind_job(job: Mapping[str, Any], kind: str, state: Callable[[], str]) -> None:
    """Marks the current task (and tasks it starts) as working on ``job``;
    ``state`` is read at each log line, so it is always the current one."""
    _job.set(({"job_id": job["_id"], "org_id": job.get("org_id"), "kind": kind}, state))


def runner_state(runner: Any, ctx: Any) -> str:
    """The state a runner is acting in, as its log lines should say."""
    if ctx.outcome is not None:
        return ctx.outcome.value
    if runner.terminate_requested or ctx.rolling_back:
        return "undoing" if runner.state.value == "undoing" else "terminating"
    if not runner.gate.is_set():
        return "paused"
    return "running"


class JobFields(logging.Filter):
    """Adds the bound job's fields to each record (a filter on the handler, so
    records of every logger get them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _job.get()
        if bound is not None:
            fields, state = bound
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
            if not hasattr(record, "state"):
                try:
                    record.state = state()
                except Exception:  # never lose a log line over its decoration
                    record.state = None
        return True


class JobLogger(logging.LoggerAdapter):
    """A logger whose every line carries one job's fields."""

    def __init__(self, logger: logging.Logger, job: Mapping[str, Any], state: str | None = None) -> None:
        super().__init__(
            logger,
            {"job_id": job["_id"], "org_id": job.get("org_id"), "kind": job.get("kind"), "state": state or job.get("state")},
        )

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then any extra
    fields (the job's among them), then the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the job's fields appended when there are some."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = " ".join(f"{k}={getattr(record, k)}" for k in JOB_FIELDS if getattr(record, k, None) is not None)
        return f"{text} [{job}]" if job else text


def configure(level: str, fmt: str, stream: Any = None) -> logging.Handler:
    """Replaces the root logger's handlers with one that writes ``fmt`` ("json"
    or "text") to ``stream`` (stdout by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(JobFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler

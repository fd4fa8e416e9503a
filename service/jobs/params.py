"""Each job kind's parameters as a typed, frozen dataclass: built once at the
HTTP edge from what the request validated, stored as its plain form (the
job's ``params``, the JSON the API shows), and parsed back once when a runner
picks the job up (``Kind.params``). Job code reads attributes, never keys.

A stored job may be older than a field: every field a past version did not
write has a default here, and keys a past version wrote that no field names
are ignored when parsing (the stored document itself is never rewritten)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..csvio.records import Position
from ..csvio.schema import parse_datetime
from ..datasets import COMMITTED, WITH_FAILED
from .model import JobState


@dataclass(frozen=True, kw_only=True)
class Params:
    """The plain form's rules, shared by every kind."""

    # Fields left out of the plain form while they are None or False, so a job
    # shows only the ones that apply to it (a background export's file, a
    # streamed one's flag).
    OMITTED_WHEN_EMPTY: ClassVar[frozenset[str]] = frozenset()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.OMITTED_WHEN_EMPTY and value in (None, False):
                continue
            doc[f.metadata.get("key", f.name)] = value
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        given = {}
        for f in dataclasses.fields(cls):
            key = f.metadata.get("key", f.name)
            if key in doc:
                given[f.name] = doc[key]
        return cls(**given)


@dataclass(frozen=True, kw_only=True)
class RawParams(Params):
    """A kind without a params class of its own (the engine's test kinds) reads
    its stored params as they are."""

    doc: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return dict(self.doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls(doc=dict(doc))


@dataclass(frozen=True, kw_only=True)
class DatasetParams(Params):
    """A job that writes or reads one dataset's records (ctx.records, ctx.profiles)."""

    dataset: str


@dataclass(frozen=True, kw_only=True)
class UploadParams(Params):
    """What every job that reads a stored upload keeps (api/imports.py's
    Upload; ctx.upload)."""

    filename: str
    file_id: str
    file_bytes: int = 0
    rows: int | None = None  # data records, header excluded
    header: list[str] = field(default_factory=list)
    data_start: dict[str, int]  # Position.as_dict() of the first data record

    def start(self, checkpoint: dict[str, Any] | None) -> Position:
        """Where reading continues: the checkpoint, else the first data record."""
        return Position(**(checkpoint or self.data_start))


@dataclass(frozen=True, kw_only=True)
class RowParams(UploadParams):
    """A job that reads its upload row by row and reports row errors."""

    batch_size: int
    on_error: str = "skip"  # or "fail": stop at the first row error
    max_errors: int = 1000

    @property
    def fail_fast(self) -> bool:
        return self.on_error == "fail"


@dataclass(frozen=True, kw_only=True)
class ImportParams(RowParams, DatasetParams):
    columns: list[str]
    column_mapping: list[dict[str, str]] = field(default_factory=list)  # header names as given -> stored
    types: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    types_auto: bool = False
    inferred_types: dict[str, str] = field(default_factory=dict)
    null_values: list[str] = field(default_factory=list)
    guard: str = "off"
    header_mode: str = "any"

    def column_specs(self) -> dict[str, str]:
        """The column types as `type[:format]` specs."""
        return {c: f"{t}:{self.formats[c]}" if c in self.formats else t for c, t in self.types.items()}


@dataclass(frozen=True, kw_only=True)
class TeamsParams(RowParams):
    layout: dict[str, int]
    width: int
    region: str
    # The job lists what it creates in its undo log (service/store/teams.py);
    # a job from before that is rolled back by its job_id tags.
    created_list: bool = False


@dataclass(frozen=True, kw_only=True)
class ExportParams(DatasetParams):
    OMITTED_WHEN_EMPTY: ClassVar[frozenset[str]] = frozenset({"file_id", "stream"})

    columns: list[str]
    date_field: str | None = None
    # ISO 8601 bounds on date_field: from inclusive, to exclusive.
    from_: str | None = field(default=None, metadata={"key": "from"})
    to: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    neutralize: bool = True
    batch_size: int = 10_000
    row_bytes: int = 0
    # The imports it reads: those of the dataset (completed, or failed too
    # with include_failed) that had finished by ``imports_as_of``, the
    # database server's time when it was created (finished_at is the server's
    # too); ``imports`` says how many there were and ``imports_digest`` which
    # (a hash of their ids), so one undone, terminated or retried since is
    # noticed. Nothing here grows with the dataset.
    imports: int = 0
    imports_as_of: str | None = None
    imports_digest: str | None = None
    # An export stored before imports_as_of listed its imports' ids instead.
    # A new one stores null: a replica of that older version, running beside
    # this one during a rolling update, then fails such an export loudly
    # ($in needs a list) instead of reading no rows.
    jobs: list[str] | None = None
    include_failed: bool = False
    # Known without counting when there is no date filter.
    expected_rows: int | None = None
    filename: str = "export.csv"
    file_id: str | None = None  # a background export's result file
    stream: bool = False  # streamed to the client that asked, no file

    @property
    def import_states(self) -> tuple[JobState, ...]:
        """The states of the imports it reads: completed, and failed when asked."""
        return WITH_FAILED if self.include_failed else COMMITTED

    def as_of(self) -> dt.datetime | None:
        """When the imports it reads had finished (None: an export stored
        before, which lists them in ``jobs``)."""
        return parse_datetime(self.imports_as_of) if self.imports_as_of else None

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The date range as datetimes (a bound out of BSON's range clamped)."""
        return (
            parse_datetime(self.from_, clamp=True) if self.from_ else None,
            parse_datetime(self.to, clamp=True) if self.to else None,
        )

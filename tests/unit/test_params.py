"""Each kind's params (service/jobs/params.py): the plain form the API shows
is what the handler built, it parses back to the same value, an older stored
form still parses, and a job reads only the class its kind declares."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.jobs.kinds import KINDS
from service.jobs.params import (
    DatasetParams,
    ExportParams,
    ImportParams,
    Params,
    RawParams,
    RowParams,
    TeamsParams,
    UploadParams,
)

START = {"offset": 12, "line": 2, "row": 0}
UPLOAD = {"filename": "people.csv", "file_id": "6b0281ee996d3c2cf9fce104", "file_bytes": 99, "rows": 3, "header": ["id"]}

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@given(
    columns=st.lists(names, min_size=1, max_size=4, unique=True),
    batch=st.integers(1, 10_000),
    on_error=st.sampled_from(["skip", "fail"]),
    nulls=st.lists(names, max_size=3),
)
def test_an_imports_params_parse_back_from_their_plain_form(columns, batch, on_error, nulls):
    params = ImportParams(
        **UPLOAD,
        data_start=START,
        dataset="people",
        columns=columns,
        types={columns[0]: "int"},
        null_values=nulls,
        batch_size=batch,
        on_error=on_error,
    )
    doc = params.to_doc()
    assert ImportParams.from_doc(doc) == params
    assert doc["columns"] == columns and doc["batch_size"] == batch and doc["dataset"] == "people"
    assert params.fail_fast == (on_error == "fail")


def test_an_exports_plain_form_names_from_as_the_api_does_and_leaves_out_what_does_not_apply():
    background = ExportParams(dataset="sales", columns=["a"], date_field="day", from_="2017-01-01T00:00:00+00:00", file_id="f1")
    doc = background.to_doc()
    assert doc["from"] == "2017-01-01T00:00:00+00:00" and "from_" not in doc
    assert doc["file_id"] == "f1" and "stream" not in doc, "a background export has a file and no stream flag"
    streamed = dataclasses.replace(background, file_id=None, stream=True).to_doc()
    assert streamed["stream"] is True and "file_id" not in streamed
    assert ExportParams.from_doc(doc) == background
    assert [b.year if b else None for b in background.bounds()] == [2017, None]


def test_an_older_stored_form_parses_with_the_defaults_and_keys_no_field_names_are_ignored():
    old = {**UPLOAD, "data_start": START, "dataset": "people", "columns": ["id"], "batch_size": 100, "retired_key": 1}
    params = ImportParams.from_doc(old)
    assert params.guard == "off" and params.header_mode == "any" and params.types == {} and params.on_error == "skip"
    teams = TeamsParams.from_doc(
        {**UPLOAD, "data_start": START, "layout": {"team": 0}, "width": 4, "region": "US", "batch_size": 5}
    )
    assert teams.created_list is False, "a job from before the created list is rolled back by its tags"


def test_a_stored_form_without_a_required_field_does_not_parse():
    with pytest.raises(TypeError):
        ImportParams.from_doc({"dataset": "people"})


def test_each_kind_declares_its_params_class_and_what_its_handles_need():
    declared = {name: kind.params for name, kind in KINDS.items()}
    assert declared == {"import": ImportParams, "export": ExportParams, "teams": TeamsParams}
    assert issubclass(ImportParams, RowParams) and issubclass(ImportParams, DatasetParams)
    assert issubclass(TeamsParams, RowParams) and not issubclass(TeamsParams, DatasetParams)
    assert issubclass(ExportParams, DatasetParams) and not issubclass(ExportParams, UploadParams)
    for cls in (ImportParams, ExportParams, TeamsParams):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_a_kind_without_a_class_reads_its_stored_params_as_they_are():
    raw = RawParams.from_doc({"rows": 3})
    assert isinstance(raw, Params) and raw.doc == {"rows": 3} and raw.to_doc() == {"rows": 3}


def test_an_export_stored_before_imports_as_of_keeps_its_list_of_imports():
    old = {"dataset": "sales", "columns": ["a"], "jobs": ["j1", "j2"], "filename": "sales.csv", "file_id": "f"}
    params = ExportParams.from_doc(old)
    assert params.jobs == ["j1", "j2"] and params.as_of() is None
    new = ExportParams(dataset="sales", columns=["a"], imports=2, imports_as_of="2026-12-02T10:00:00+00:00")
    assert new.to_doc()["jobs"] is None and new.to_doc()["imports"] == 2 and new.as_of() is not None

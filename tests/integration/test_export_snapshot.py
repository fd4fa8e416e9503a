"""Which imports an export reads (issue 21, finding 7; review of the change):
the imports finished by its creation, by the database server's clock, and
exactly those: a set that changed since fails the export, whatever the
replicas' clocks say."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from service.api.exports import export_params
from service.datasets import import_ids
from service.errors import JobFailed
from service.jobs import repo as repo_module
from service.jobs.kinds.exports import read_imports
from service.typedefs import MANAGER_KEY

from ..support.helpers import make_csv, start_import, wait_for_state


async def test_an_import_finished_by_a_replica_whose_clock_runs_ahead_is_exported(client, db, monkeypatch):
    """finished_at was the finishing replica's time and the export's cut-off
    the API replica's: with the first 2 s ahead, an import the API showed
    completed was left out of an export made right after it (here the
    dataset's only import: a 404). Both are the server's time now."""
    real = repo_module.utcnow
    monkeypatch.setattr(repo_module, "utcnow", lambda: real() + dt.timedelta(seconds=2))
    job = await start_import(client, make_csv(10))
    await wait_for_state(client, job["id"], "completed")
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"})
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["params"]["imports"] == 1


async def test_an_export_whose_imports_changed_since_its_creation_fails_even_when_their_number_did_not(client, db):
    """A swap (one import gone, another dated before the cut-off appearing,
    here written by hand) keeps the count: the digest of the ids tells."""
    repo = client.app[MANAGER_KEY].repo
    a = await start_import(client, make_csv(10, start=1))
    await wait_for_state(client, a["id"], "completed")
    b = await start_import(client, make_csv(10, start=11))
    await wait_for_state(client, b["id"], "completed")
    await repo.jobs.update_one({"_id": b["id"]}, {"$set": {"state": "running", "finished_at": None}})
    params = await export_params(repo, "default", {"dataset": "people"})
    assert params.imports == 1 and params.expected_rows == 10
    before = params.as_of() - dt.timedelta(milliseconds=5)
    await repo.jobs.update_one({"_id": b["id"]}, {"$set": {"state": "completed", "finished_at": before}})
    await repo.jobs.update_one({"_id": a["id"]}, {"$set": {"state": "undone"}})

    async def dataset_imports(dataset, states, as_of):
        return await import_ids(repo, "default", dataset, states, as_of)

    with pytest.raises(JobFailed, match="not those it was created over"):
        await read_imports(SimpleNamespace(dataset_imports=dataset_imports), params)

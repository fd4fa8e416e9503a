"""What describe() says of a dataset is bounded whatever its number of imports
(issue 21, finding 7): counts and the last few imports, no list of them all."""

from __future__ import annotations

import datetime as dt

from service import datasets
from service.typedefs import MANAGER_KEY

from ..support.helpers import make_csv, start_import, wait_for_state


async def test_a_datasets_description_names_only_its_last_imports_however_many_there_were(client, db, monkeypatch):
    monkeypatch.setattr(datasets, "RECENT_IMPORTS", 2, raising=False)
    ids = []
    for start in (1, 11, 21):
        job = await start_import(client, make_csv(10, start=start))
        await wait_for_state(client, job["id"], "completed")
        ids.append(job["id"])
    described = await datasets.describe(client.app[MANAGER_KEY].repo, "default", "people")
    assert described is not None
    assert not hasattr(described, "jobs"), "a list of every import grows with the dataset"
    assert described.imports == 3 and described.recent == ids[-2:]
    assert described.rows == 30


async def test_an_exports_params_do_not_list_every_import_of_its_dataset(client, db):
    for start in (1, 11):
        job = await start_import(client, make_csv(10, start=start))
        await wait_for_state(client, job["id"], "completed")
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"})
    assert resp.status == 202
    export = await resp.json()
    await wait_for_state(client, export["id"], "completed")
    assert export["params"]["jobs"] is None, "a list that grows with every import of the dataset"
    as_of, created = (dt.datetime.fromisoformat(t) for t in (export["params"]["imports_as_of"], export["created_at"]))
    assert export["params"]["imports"] == 2 and as_of <= created

"""GET /datasets/{dataset}: what the dataset's latest completed import said
about its columns, so a form can start from it (the import form pre-selects
each column's type from it)."""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound
from ..jobs.model import iso
from ..profiles import store as profiles
from ..typedefs import DB_KEY
from .common import dataset_param, json_response, org_of, query_params


async def get_dataset(request: web.Request) -> web.Response:
    """The columns and type specs of the dataset's latest completed import (from
    its profile: a primary-key read), and how many imports the profile keeps;
    404 for a dataset the org has no completed import of."""
    query_params(request, ())
    org_id = org_of(request)
    name = dataset_param(request.match_info["dataset"])
    imports = await profiles.history(request.app[DB_KEY].profiles, org_id, name)
    if not imports:
        raise NotFound(f"Your organisation has no completed import into dataset {name!r}.", parameter="dataset")
    latest = imports[-1]
    return json_response(
        {
            "dataset": name,
            "columns": latest.get("columns", []),
            "types": latest.get("types", {}),
            "latest_import": {"job_id": latest.get("job_id"), "at": iso(latest.get("at")), "rows": latest.get("rows")},
            "imports_kept": len(imports),
        }
    )

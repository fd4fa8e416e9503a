"""MkDocs hooks: the reference pages that the code already states in full.

A page holding a marker such as `<!-- generated:openapi -->` gets the table
built from the code in its place, so these pages cannot drift from it:

- openapi: the HTTP API, from the service's own OpenAPI document (the one it
  serves at /api/v1/openapi.json), which is also published as openapi.json;
- errors: the problem types, from service/errors.py;
- indexes: the MongoDB indexes, from service/store/db.py;
- metrics: the Prometheus metrics, from service/metrics.py;
- settings: the environment variables, from service/settings.py (SETTINGS).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import errors  # noqa: E402
from service.api.openapi import document  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.settings import markdown_table  # noqa: E402
from service.store.db import INDEXES, TTL_FIELDS, UNIQUE_INDEXES  # noqa: E402

METHODS = ("get", "put", "post", "patch", "delete")


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def openapi_table() -> str:
    out = []
    doc = document()
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            out.append(f"### `{method.upper()} {path}`\n")
            if op.get("summary"):
                out.append(cell(op["summary"]) + "\n")
            if op.get("description"):
                out.append(op["description"].strip() + "\n")
            params = op.get("parameters", []) + item.get("parameters", [])
            if params:
                out.append("| parameter | in | required | description |\n|---|---|---|---|")
                for p in params:
                    if "$ref" in p:
                        out.append(f"| `{p['$ref'].rsplit('/', 1)[-1]}` | | | |")
                        continue
                    out.append(
                        f"| `{p['name']}` | {p.get('in', '')} | {'yes' if p.get('required') else ''} | "
                        f"{cell(p.get('description', ''))} |"
                    )
                out.append("")
            responses = op.get("responses", {})
            if responses:
                out.append("| status | description |\n|---|---|")
                for status, resp in responses.items():
                    desc = resp.get("description") or resp.get("$ref", "").rsplit("/", 1)[-1]
                    out.append(f"| {status} | {cell(desc)} |")
                out.append("")
    return "\n".join(out)


def errors_table() -> str:
    rows = ["| type | status | title | default detail |", "|---|---|---|---|"]
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.ServiceError):
            doc = cell((cls.__doc__ or "").strip())
            rows.append(f"| `urn:problem:collect-jobs:{cls.slug}` (`{name}`) | {cls.status} | {cls.title} | {doc} |")
    return "\n".join(rows)


def indexes_table() -> str:
    rows = ["| collection | index | keys | unique |", "|---|---|---|---|"]
    for collection, indexes in INDEXES.items():
        for name, keys in indexes:
            spec = ", ".join(f"`{field}` {'↑' if order == 1 else '↓'}" for field, order in keys)
            unique = "yes" if (collection, name) in UNIQUE_INDEXES else ""
            rows.append(f"| `{collection}` | `{name}` | {spec} | {unique} |")
    for collection, field in TTL_FIELDS.items():
        rows.append(f"| `{collection}` | `ttl` (TTL) | `{field}` ↑ | |")
    return "\n".join(rows)


def metrics_table() -> str:
    rows = ["| metric | type | labels | description |", "|---|---|---|---|"]
    for metric in vars(Metrics()).values():
        if not hasattr(metric, "_labelnames"):
            continue
        name = metric._name + ("_total" if metric._type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames)
        rows.append(f"| `{name}` | {metric._type} | {labels} | {cell(metric._documentation)} |")
    return "\n".join(rows)


GENERATORS = {
    "openapi": openapi_table,
    "errors": errors_table,
    "indexes": indexes_table,
    "metrics": metrics_table,
    "settings": markdown_table,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for name, build in GENERATORS.items():
        marker = f"<!-- generated:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, build())
    return markdown


def on_files(files, config):
    files.append(File.generated(config, "reference/openapi.json", content=json.dumps(document(), indent=2) + "\n"))
    return files

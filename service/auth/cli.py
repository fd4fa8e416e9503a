"""python -m service api-keys ...: the first admin key of an organisation, made
where the database and the pepper are (in a pod: kubectl exec). It prints the
secret once; only its hash is stored."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

from .. import audit
from ..csvio.schema import parse_datetime
from ..settings import ConfigError, Settings
from ..store.db import Database
from .identity import Identity, Role
from .keys import ApiKeys, key_json
from .middleware import ORG_RE


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service api-keys", description="Manage API keys.")
    commands = p.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its secret (once)")
    create.add_argument("--org", required=True, help="the organisation the key acts in")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--expires-at", help="ISO 8601 date or datetime; never, when omitted")
    listing = commands.add_parser("list", help="list an organisation's keys (no secrets)")
    listing.add_argument("--org", required=True)
    revoke = commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--org", required=True)
    revoke.add_argument("--id", required=True, dest="key_id")
    return p


async def run(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.connect(settings.mongo)
    try:
        await db.ensure_indexes()
        keys = ApiKeys(db.api_keys, settings.auth_api_key_pepper)
        who = Identity(args.org, "cli", f"python -m service api-keys on {socket.gethostname()}", None, "cli")
        if args.command == "create":
            expires = parse_datetime(args.expires_at) if args.expires_at else None
            doc, secret = await keys.create(args.org, args.name, Role(args.role), expires, who.who())
            await audit.append(db, who, "api_key.create", key_id=doc["_id"])
            print(f"id: {doc['_id']}\norg: {doc['org_id']}\nrole: {doc['role']}\nname: {doc['name']}", file=sys.stderr)
            print("The secret is shown only now; store it in your secret manager:", file=sys.stderr)
            print(secret)
        elif args.command == "list":
            for doc in await keys.list(args.org):
                print(json.dumps(key_json(doc), default=str))
        else:
            doc, revoked = await keys.revoke(args.org, args.key_id, who.who())
            if revoked:
                await audit.append(db, who, "api_key.revoke", key_id=doc["_id"])
            print(f"revoked {doc['_id']} ({doc['name']})" if revoked else f"{doc['_id']} was already revoked")
        return 0
    finally:
        await db.close()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if not ORG_RE.fullmatch(args.org):
        print("collect-jobs: --org must be 1-64 letters, digits, '_' or '-'", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        if args.expires_at:
            parse_datetime(args.expires_at)
    except (ConfigError, ValueError) as error:
        print(f"collect-jobs: {error}", file=sys.stderr)
        return 2
    if not settings.auth_api_key_pepper:
        print("collect-jobs: AUTH_API_KEY_PEPPER is not set; API keys need it (the service's own value)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, settings))
    except Exception as error:  # NotFound on revoke, database errors: a message, not a traceback
        print(f"collect-jobs: {type(error).__name__}: {error}", file=sys.stderr)
        return 1

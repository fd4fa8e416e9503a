"""API keys for pipelines: an opaque secret with the recognisable prefix ``cjk_``
(so secret scanners can find leaked ones), shown once, stored only as an
HMAC-SHA256 under a server-side pepper (AUTH_API_KEY_PEPPER). A fast keyed hash
rather than a password hash: the secret has 238 random bits, so there is nothing
to slow down, and a stolen ``api_keys`` collection is useless without the pepper.

Every request looks its key up in the database, so a revocation holds on every
replica from the next request on."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import string
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from ..errors import NotFound
from .identity import Identity, Role

PREFIX = "cjk_"
ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40  # 62**40 ~ 2**238
MAX_KEYS_LISTED = 1000


def new_secret() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def key_hash(pepper: str, secret: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def key_json(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a key: never its secret or hash."""
    return {
        "id": doc["_id"],
        "org_id": doc["org_id"],
        "name": doc["name"],
        "role": doc["role"],
        "prefix": doc["prefix"],
        "created_at": doc["created_at"],
        "created_by": doc.get("created_by"),
        "expires_at": doc.get("expires_at"),
        "revoked_at": doc.get("revoked_at"),
        "revoked_by": doc.get("revoked_by"),
        "links": {"self": f"/api/v1/api-keys/{doc['_id']}"},
    }


class ApiKeys:
    """The ``api_keys`` collection."""

    def __init__(self, collection: AsyncCollection, pepper: str) -> None:
        self.collection = collection
        self.pepper = pepper

    async def create(
        self, org_id: str, name: str, role: Role, expires_at: dt.datetime | None, created_by: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """The new key's document and its secret (which is not stored)."""
        if not self.pepper:
            raise RuntimeError("AUTH_API_KEY_PEPPER is not set; API keys cannot be created")
        secret = new_secret()
        doc = {
            "_id": str(ObjectId()),
            "org_id": org_id,
            "name": name,
            "role": role.value,
            "hash": key_hash(self.pepper, secret),
            "prefix": secret[: len(PREFIX) + 6],
            "created_at": dt.datetime.now(dt.timezone.utc),
            "created_by": created_by,
            "expires_at": expires_at,
            "revoked_at": None,
        }
        await self.collection.insert_one(doc)
        return doc, secret

    async def identify(self, secret: str, now: dt.datetime) -> Identity | None:
        """The identity of a valid key; None for an unknown, revoked or expired one."""
        if not self.pepper:
            return None
        doc = await self.collection.find_one({"hash": key_hash(self.pepper, secret)})
        if doc is None or doc.get("revoked_at") is not None:
            return None
        expires = doc.get("expires_at")
        if expires is not None and expires <= now:
            return None
        return Identity(
            org_id=doc["org_id"], actor=f"key:{doc['_id']}", actor_name=doc["name"], role=Role(doc["role"]), method="api_key"
        )

    async def list(self, org_id: str) -> list[dict[str, Any]]:
        cursor = self.collection.find({"org_id": org_id}, sort=[("_id", DESCENDING)], limit=MAX_KEYS_LISTED)
        return await cursor.to_list()

    async def revoke(self, org_id: str, key_id: str, revoked_by: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Revokes the key; returns it and whether this call revoked it (a second
        revocation is answered with the key as it is and changes nothing)."""
        now = dt.datetime.now(dt.timezone.utc)
        doc = await self.collection.find_one_and_update(
            {"_id": key_id, "org_id": org_id, "revoked_at": None},
            {"$set": {"revoked_at": now, "revoked_by": revoked_by}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc, True
        doc = await self.collection.find_one({"_id": key_id, "org_id": org_id})
        if doc is None:
            raise NotFound(f"No API key {key_id!r} exists in your organisation.")
        return doc, False

"""The hostile suite: the real app with authentication on, a real database,
two organisations, and an attacker who holds only a viewer API key of org A
(unless a case needs more, and then it says so)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import pytest

from ..support.authkit import ORG_B, As, auth_settings
from ..support.helpers import make_csv, start_import, wait_for_state


@dataclass
class Orgs:
    admin_a: As  # a JWT admin of org A (made the viewer key)
    operator_a: As
    operator_b: As
    viewer: As  # the attacker: a viewer API key of org A


@pytest.fixture
async def orgs(auth_client, idp_key) -> Orgs:
    return await _orgs(auth_client, idp_key)


@pytest.fixture
def orgs_with(make_client, jwks, idp_key):
    """``await orgs_with(**settings)``: the same callers, of an app built with
    these settings (a limit made small enough to reach in a test)."""

    async def make(**overrides) -> Orgs:
        return await _orgs(await make_client(**auth_settings(jwks.url, **overrides)), idp_key)

    return make


async def _orgs(auth_client, idp_key) -> Orgs:
    admin_a = As(auth_client, idp_key.mint("root-a", roles=["admin"]))
    resp = await admin_a.post("/api/v1/api-keys", json={"name": "attacker", "role": "viewer"})
    assert resp.status == 201, await resp.text()
    viewer = As(auth_client, (await resp.json())["secret"])
    return Orgs(
        admin_a=admin_a,
        operator_a=As(auth_client, idp_key.mint("olga", roles=["operator"])),
        operator_b=As(auth_client, idp_key.mint("bert", org=ORG_B, roles=["operator"])),
        viewer=viewer,
    )


async def imported(client: As, body: bytes | None = None, dataset: str = "people") -> dict:
    """A completed import of ``body`` (20 rows of people by default)."""
    job = await start_import(client, body or make_csv(20), dataset=dataset)
    return await wait_for_state(client, job["id"], "completed")


async def exported(client: As, dataset: str = "people") -> dict:
    """A completed background export of ``dataset``."""
    resp = await client.post("/api/v1/jobs/export", json={"dataset": dataset})
    assert resp.status == 202, await resp.text()
    return await wait_for_state(client, (await resp.json())["id"], "completed")


class Stalled:
    """A real client that sends its request, reads the response's head, and
    then stops reading: a raw socket with a small receive buffer, so the
    server's writes block once a few kilobytes are in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, headers: dict[str, str]):
        self.reader, self.writer, self.status, self.headers = reader, writer, status, headers

    @classmethod
    async def open(
        cls, caller: As, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, read_head: bool = True
    ) -> Stalled:
        server = caller.client.server
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {server.host}:{server.port}"]
        lines += [f"{k}: {v}" for k, v in {**caller.headers, **(headers or {})}.items()]
        if "Transfer-Encoding" not in (headers or {}):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        if not read_head:
            return cls(reader, writer, 0, {})
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        return cls(reader, writer, int(head[0].split()[1]), fields)

    def close(self) -> None:
        self.writer.transport.abort()

"""The database server's clock, as this replica sees it.

Lease expiry and backoff times are written and compared in the database's
time, not each pod's: a replica converts its own wall clock with an offset it
measures from the server's ``hello`` reply (``localTime``) on every tick of
its job manager. Two pods whose clocks disagree by minutes therefore still
agree on when a lease expires; what must stay small is each clock's drift
between two measurements (a second), not their skew."""

from __future__ import annotations

import datetime as dt
import time

from pymongo.asynchronous.database import AsyncDatabase


class DbClock:
    def __init__(self) -> None:
        self.offset = 0.0  # server time minus local wall time, in seconds

    async def sync(self, db: AsyncDatabase) -> None:
        sent = time.time()
        reply = await db.command("hello")
        received = time.time()
        server = reply.get("localTime")
        if not isinstance(server, dt.datetime):
            return  # a server that does not say; keep the last offset
        if server.tzinfo is None:
            server = server.replace(tzinfo=dt.timezone.utc)
        self.offset = server.timestamp() - (sent + received) / 2

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.offset, dt.timezone.utc)

    def after(self, seconds: float) -> dt.datetime:
        return self.now() + dt.timedelta(seconds=seconds)

"""Background loops that end when they are cancelled, even inside PyMongo.

PyMongo's async API (4.20) can swallow a CancelledError that lands inside an
operation: the operation then completes as if nothing had happened and the
task carries on, still marked as cancelling. Measured against FerretDB, about
one cancel in nine that arrived mid-operation was lost this way. A loop that
goes back to sleep after such an operation would keep app shutdown waiting
for its whole interval (a test run's teardown hung for 300 s on the retention
sweeper). So every loop here asks ``end_if_cancelled()`` after each step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def cancel_requested() -> bool:
    """Whether the running task has been asked to stop (and has not said no)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def end_if_cancelled() -> None:
    """Raises CancelledError if the running task was cancelled, whether or not
    the cancel reached the code it landed in."""
    if cancel_requested():
        raise asyncio.CancelledError


async def repeat(step: Callable[[], Awaitable[object]], every_seconds: float, on_error: Callable[[Exception], None]) -> None:
    """Runs ``step`` now and then every ``every_seconds`` until cancelled; a
    step's error (an outage, say) goes to ``on_error`` and the next step retries."""
    while True:
        try:
            await step()
        except Exception as exc:
            on_error(exc)
        end_if_cancelled()
        await asyncio.sleep(every_seconds)


async def stop(task: asyncio.Task) -> None:
    """Cancels a background task and waits until it has ended."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

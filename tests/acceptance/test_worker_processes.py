"""The JOB_WORKERS processes of a real `python -m service`: they end with the
process that started them, however it ends, on Linux by the kernel's signal
and elsewhere by their own watch of their parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..support.devdb import ROOT
from ..support.helpers import make_csv
from .api import FAST


def _stat(pid: int) -> tuple[int, str, str] | None:
    """Parent, state and start time of a process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; the fields after it do not.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], fields[19]


def workers_of(pid: int) -> dict[int, str]:
    """The import worker processes whose parent is ``pid``, with their start
    times (so a reused pid is not taken for a worker still running)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] == pid and b"spawn_main" in cmdline:
            found[int(entry.name)] = stat[2]
    return found


def running(pid: int, started: str) -> bool:
    """A zombie has ended: nobody may be left to reap it once its parent is gone."""
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[1] != "Z"


async def test_worker_processes_end_when_their_service_is_killed_with_kill_9(spawn, api):
    proc = spawn(JOB_WORKERS="2", **FAST)
    job = await api.start_import(proc, make_csv(5000), batch_size=500)
    await api.wait(proc, job["id"], lambda j: j["state"] in ("completed", "failed"), "the import")
    deadline = time.monotonic() + 30
    while len(workers := workers_of(proc.process.pid)) < 2:
        assert time.monotonic() < deadline, f"the service started {len(workers)} of its 2 workers"
        await asyncio.sleep(0.1)

    proc.signal(signal.SIGKILL)
    proc.wait(10)

    deadline = time.monotonic() + 10
    try:
        while left := [pid for pid, started in workers.items() if running(pid, started)]:
            assert time.monotonic() < deadline, f"worker processes {left} outlived their service"
            await asyncio.sleep(0.1)
    finally:  # a failure must not leave them running on the machine
        for pid, started in workers.items():
            if running(pid, started):
                os.kill(pid, signal.SIGKILL)


# A child that watches its parent the portable way only, as on a system
# without prctl; its parent starts it, waits until it watches, and dies.
CHILD = """
import sys, time
from service.jobs import lifeline
lifeline._ask_for_sigkill_when_parent_dies = lambda: None
lifeline.end_with_parent(int(sys.argv[1]))
print("watching", flush=True)
time.sleep(120)
"""
PARENT = """
import os, signal, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1], str(os.getpid())], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
)
assert child.stdout.readline() == b"watching\\n"
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_without_the_kernels_signal_a_worker_still_ends_within_seconds_of_its_parent():
    parent = subprocess.run([sys.executable, "-c", PARENT, CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pid = int(parent.stdout)
    stat = _stat(pid)
    started = stat[2] if stat is not None else ""

    deadline = time.monotonic() + 10
    try:
        while running(pid, started):
            assert time.monotonic() < deadline, "the child outlived its parent"
            await asyncio.sleep(0.1)
    finally:
        if running(pid, started):
            os.kill(pid, signal.SIGKILL)

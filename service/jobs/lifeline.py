"""A child process that ends when the process that started it is gone.

An import worker blocks reading its pool's queue, and it holds that queue's
write end itself, so a parent killed with SIGKILL leaves it waiting forever
with parent 1. In a pod the container's end takes it along; on a VM, or in a
test run, it would leak."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL_SECONDS = 1.0


def end_with_parent(parent: int) -> None:
    """Called in the child, first thing: ``parent`` is the pid of the process
    that started it, as that process saw itself (the child's own getppid()
    may already be someone else's).

    On Linux the kernel sends SIGKILL the moment the parent ends. That signal
    is tied to the thread that started the child: a pool starts its workers
    from its submit(), here the event loop's thread, which lives as long as
    the process. A parent that died before the request was made is not
    signalled, hence the check right after it. A thread that compares
    getppid() with ``parent`` every second covers other systems and a prctl
    that was refused."""
    _ask_for_sigkill_when_parent_dies()
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="end-with-parent", daemon=True).start()


def _ask_for_sigkill_when_parent_dies() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no libc symbols to call (a static build): the thread still watches
        return
    prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL))


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)

"""The short chaos run of CI (issue 24): a fixed handful of seeds, each 25 s of
work and faults on three replicas, then every invariant is checked. The
seeds are chosen so that together they inject every kind of fault (kill -9,
SIGSTOP past the lease, the clock-step stand-in, SIGTERM, the database
stopped), and run every kind of job, with streamed downloads that finish,
stall and leave. A failure prints the seed, the schedule and the first
violated invariant; `python bench/chaos.py --seed N --duration 25` replays it."""

from __future__ import annotations

import pytest

from .plan import generate
from .run import run

SEEDS = (3, 15, 18)  # kill9+db+stop; db+sigterm+kill9 with 9 teams jobs; sigterm+clock_step
DURATION = 25.0


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_short_chaos_run_keeps_every_promise(seed, tmp_path):
    result = await run(generate(seed, DURATION), tmp_path, log=lambda line: None)
    print(result.summary())
    if not result.ok:
        pytest.fail(result.failure_report(), pytrace=False)

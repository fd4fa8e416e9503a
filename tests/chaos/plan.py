"""The schedule of a chaos run, generated from its seed alone.

A schedule is a list of events at offsets from the start: work (imports,
background and streamed exports, teams jobs), control requests (which name
their job by the index of the work event that created it, so the schedule is
fixed before any job id exists) and faults (one at a time, each with its
target and how long it lasts). The same seed and duration always give the
same schedule; ``to_json``/``from_json`` let a schedule be saved, edited
(shortened to the events that matter) and replayed. The processes' own timing
is not under the seed's control: a replay runs the same schedule, not the same
interleaving, so a failure found once may need a few replays to recur."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

ORGS = ("acme", "globex", "initech")
# r0 builds its import batches in two worker processes; r1 and r2 in-process.
REPLICAS = {"r0": 2, "r1": 1, "r2": 1}
DATASETS = ("people", "sales")
LEASE_SECONDS = 6.0

# Faults, one at a time: (name, weight). clock_step is a stand-in (see cluster.py).
FAULTS = (("kill9", 3), ("stop", 3), ("clock_step", 1), ("sigterm", 2), ("db", 2))
WORK = (("import", 4), ("export", 2), ("stream", 2), ("teams", 3))
# "next" is the request that moves the job on from the state the run last saw
# (running: pause, paused: resume, failed: retry, else terminate), so most
# requests take effect; the others are sent whatever the state, as users do.
ACTIONS = (("next", 6), ("pause", 2), ("resume", 2), ("terminate", 2), ("retry", 1))


@dataclass
class Event:
    t: float  # seconds after the start
    what: str  # import | export | stream | teams | control | fault
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.t:7.2f}s {self.what:9} {args}"


@dataclass
class Plan:
    seed: int
    duration: float
    events: list[Event]

    def work(self) -> list[Event]:
        return [e for e in self.events if e.what in ("import", "export", "stream", "teams")]

    def to_json(self) -> str:
        return json.dumps({"seed": self.seed, "duration": self.duration, "events": [asdict(e) for e in self.events]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(raw["seed"], raw["duration"], [Event(**e) for e in raw["events"]])

    def describe(self) -> str:
        lines = [f"schedule of seed {self.seed}, {self.duration:g} s, {len(self.events)} events:"]
        lines += [
            f"  #{e.args['work']:<3} {e.describe()}" if "work" in e.args and e.what != "control" else f"       {e.describe()}"
            for e in self.events
        ]
        return "\n".join(lines)


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def generate(seed: int, duration: float, lanes: int = 1) -> Plan:
    rng = random.Random(seed)
    replicas = list(REPLICAS)
    events: list[Event] = []

    # Work: about one job every two seconds; exports only once imports had time.
    t, index = 0.5, 0
    while t < duration:
        kind = _pick(rng, WORK)
        if kind in ("export", "stream") and t < 12:
            kind = "import"
        args: dict[str, Any] = {
            "work": index,
            "org": rng.choice(ORGS),
            "replica": rng.choice(replicas),
            "input": rng.randrange(1 << 30),
        }
        if kind == "import":
            args.update(
                dataset=rng.choice(DATASETS),
                rows=rng.choice((300, 1000, 2000, 3000)),
                bad=rng.random() < 0.4,
                batch_size=rng.choice((50, 100, 200)),
            )
        elif kind == "export":
            args.update(dataset=rng.choice(DATASETS), batch_size=rng.choice((50, 200, 1000)))
        elif kind == "stream":
            args.update(
                dataset=rng.choice(DATASETS),
                batch_size=rng.choice((50, 200)),
                client=rng.choice(("full", "full", "stall", "disconnect")),
                after_bytes=rng.choice((1, 2_000, 20_000)),
                stall=round(rng.uniform(1, LEASE_SECONDS * 1.5), 1),
            )
        else:
            args.update(rows=rng.randint(8, 40), batch_size=rng.choice((3, 5, 10)))
        events.append(Event(round(t, 2), kind, args))
        index += 1
        t += rng.expovariate(1 / 1.6)

    # Control requests: about one a second, mostly at recent jobs.
    works = [e for e in events]
    t = 2.0
    while t < duration:
        made = [e for e in works if e.t < t]
        if made:
            recent = made[-6:]
            target = rng.choice(recent if rng.random() < 0.8 else made)
            events.append(
                Event(
                    round(t, 2),
                    "control",
                    {"action": _pick(rng, ACTIONS), "work": target.args["work"], "replica": rng.choice(replicas)},
                )
            )
        t += rng.expovariate(1 / 1.0)

    # Faults, one at a time in each lane, none in the first seconds nor past the
    # end. One lane by default (CI's seeds); ``lanes`` > 1 adds lanes of replica
    # faults that overlap the first, and a lane of its own for the database, so a
    # long run injects thousands (a fault whose replica is already down or
    # stopped is skipped and counted as such).
    for lane in range(max(1, lanes)):
        events += _faults(rng, duration, replicas, lane, lanes > 1)
    events.sort(key=lambda e: e.t)
    return Plan(seed, duration, events)


def _faults(rng: random.Random, duration: float, replicas: list[str], lane: int, overlapping: bool) -> list[Event]:
    """One lane of faults. Lane 0 of a single-lane plan mixes every kind; with
    overlapping lanes, lane 0 is the database's and the others the replicas'."""
    events: list[Event] = []
    kinds = FAULTS
    if overlapping:
        kinds = tuple(f for f in FAULTS if (f[0] == "db") == (lane == 0))
    t = 4 + rng.uniform(0, 3)
    while t < duration - 2:
        kind = _pick(rng, kinds)
        args: dict[str, Any] = {"kind": kind}
        if overlapping:
            args["lane"] = lane
        if kind == "db":
            args.update(down=round(rng.choice((rng.uniform(2, 6), rng.uniform(8, 14))), 1), abrupt=rng.random() < 0.5)
        else:
            # "owner": the replica that owns the newest unfinished job when the
            # fault starts (faults at a job's owner find the interleavings).
            args["replica"] = "owner" if rng.random() < 0.6 else rng.choice(replicas)
            args["fallback"] = rng.choice(replicas)
            if kind in ("kill9", "sigterm"):
                args["down"] = round(rng.uniform(0.2, 4), 1)
            elif kind == "stop":
                args["down"] = round(LEASE_SECONDS + rng.uniform(0.5, 4), 1)
            else:  # clock_step
                args["down"] = round(2 * LEASE_SECONDS + rng.uniform(0.5, 3), 1)
        events.append(Event(round(t, 2), "fault", args))
        # The database's own lane rests longer: a database down most of the
        # time would leave nothing to interleave with. Replica lanes rest less:
        # a fault whose target another lane holds is skipped.
        if not overlapping:
            t += args["down"] + rng.uniform(2, 6)
        else:
            t += args["down"] + (rng.uniform(10, 25) if lane == 0 else rng.uniform(1, 3))
    return events

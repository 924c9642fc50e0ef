"""The fault schedule, derived from the seed alone: which fault, when, and for how long.

Fault kinds: `kill -9` of each service process and of the gateway (restarted with `deploy/up.sh
service NAME` after its downtime), `kill -9` of the Kafka broker (then `deploy/kafka.sh start`), and a
PostgreSQL restart (fast shutdown, downtime, start). The kinds come in shuffled rounds, so every kind
happens once before any happens twice; faults start `fault_every` seconds apart (±25%) — or once
a conflicting fault is over (see `bench.chaos.run.inject_faults`) — for as long as the load runs, and
at least one full round.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.chaos.topology import PROCESSES

KINDS: tuple[str, ...] = (*(f"kill9:{p}" for p in PROCESSES), "kill9:kafka", "restart:postgres")
INFRASTRUCTURE = frozenset({"kafka", "postgres"})


@dataclass(frozen=True, slots=True)
class Fault:
    number: int
    at: float  # seconds after the load starts
    kind: str
    downtime: float  # seconds the process stays down before it is started again

    @property
    def target(self) -> str:
        return self.kind.split(":", 1)[1]

    def describe(self) -> str:
        action = "restart" if self.kind.startswith("restart:") else "kill -9"
        return f"{action} {self.target}, down {self.downtime:.1f} s"


def fault_schedule(seed: int, *, duration: float, every: float) -> list[Fault]:
    """Faults for a load of `duration` seconds: one every `every` seconds (±25%), at least one round."""
    rng = random.Random(f"chaos-faults-{seed}")
    faults: list[Fault] = []
    at = every * rng.uniform(0.75, 1.25)
    while at < duration or len(faults) < len(KINDS):
        kinds = list(KINDS)
        rng.shuffle(kinds)
        for kind in kinds:
            if len(faults) >= len(KINDS) and at >= duration:
                break
            downtime = rng.uniform(0.5, 3.0)
            faults.append(Fault(len(faults) + 1, round(at, 2), kind, round(downtime, 2)))
            at += every * rng.uniform(0.75, 1.25)
    return faults

"""Garbage collection for bulk jobs that keep a large heap of long-lived objects.

CPython's cyclic collector examines every tracked object of a generation each time it collects it,
and a full collection examines them all. A bulk job that keeps what it has done in memory (the
identity import keeps every source record's matching view and every golden record it assembled, so
that later chunks need not read them back) grows the heap by hundreds of thousands of objects per
chunk, and with the default thresholds (700, 10, 10) the collector walks that growing heap again and
again: measured on a 20,000-record import, 7.8 s of a 18.5 s run (27 full collections, 6.8 s).

`bulk_job()` around such a job raises the youngest generation's threshold, and `keep()`, called where
the job has just put away what it keeps (once a chunk), freezes every object alive at that moment
(`gc.freeze`, which also zeroes the young count): no later collection examines them again, and as
long as a chunk leaves fewer than `YOUNG_THRESHOLD` new containers alive, no collection runs during
the job at all. (A threshold of 50,000 still cost 223 young collections, 7.1 s, of a 100,000-record
import: each examined the chunk's fresh containers, prefetched rows included. Cyclic garbage is rare
there, ~200 objects a chunk; the threshold still bounds it for a job that never calls `keep()`.) When the last
bulk job running ends, the thresholds are restored and the frozen objects go back to the oldest
generation (`gc.unfreeze`), where a collection finds whatever of them has become garbage meanwhile.
A service freezes what it loaded at start (`ServiceRuntime.start`); if anything was frozen before
the job, the end of the job collects once and freezes what is alive again, so that stays as it was.
(Frozen objects are still freed as soon as nothing refers to them: only cyclic garbage waits.)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 1_000_000
# Cyclic garbage frozen with what a job keeps waits for the job's end; every this many `keep()`s the
# whole heap is collected once (a walk of everything alive, ~1–3 s with a full import cache) so a
# very long job holds at most this many chunks' worth of it (~200 objects a chunk measured).
COLLECT_EVERY = 100

_jobs = 0
_kept = 0
_saved: tuple[int, int, int] | None = None
_frozen_before = False


@contextmanager
def bulk_job(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """The collector tuned for a bulk job while the block runs (jobs may nest or overlap)."""
    global _jobs, _saved, _frozen_before
    if _jobs == 0:
        _saved = gc.get_threshold()
        _frozen_before = gc.get_freeze_count() > 0
        gc.set_threshold(max(young, _saved[0]), _saved[1], _saved[2])
    _jobs += 1
    try:
        yield
    finally:
        _jobs -= 1
        if _jobs == 0:
            if _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
            gc.unfreeze()
            if _frozen_before:
                gc.collect()
                gc.freeze()


def keep() -> None:
    """Inside a bulk job: what is alive now is kept, so no later collection of the job examines it
    (and, every `COLLECT_EVERY` calls, the garbage frozen meanwhile is collected first)."""
    global _kept
    if not _jobs:
        return
    _kept += 1
    if _kept % COLLECT_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()

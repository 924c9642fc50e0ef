"""`shared.heap`: the collector tuned for bulk jobs, and put back as it was after the last one."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared import heap


@pytest.fixture(autouse=True)
def nothing_frozen() -> Iterator[None]:
    """Each test starts with nothing frozen (services started by earlier tests freeze what they
    loaded) and leaves the process as it found it."""
    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    yield
    gc.unfreeze()
    if frozen:
        gc.collect()
        gc.freeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_thresholds_are_raised_for_the_job_and_restored_after_the_last() -> None:
    before = gc.get_threshold()
    with heap.bulk_job(young=123_456):
        assert gc.get_threshold() == (123_456, before[1], before[2])
        with heap.bulk_job():  # jobs overlap: the first one's settings stay until the last ends
            assert gc.get_threshold()[0] == 123_456
        assert gc.get_threshold()[0] == 123_456
    assert gc.get_threshold() == before


def test_kept_objects_are_frozen_during_the_job_and_collectable_after_it() -> None:
    assert gc.get_freeze_count() == 0
    heap.keep()  # outside a job: nothing happens
    assert gc.get_freeze_count() == 0
    with heap.bulk_job():
        node = Node()
        gone = weakref.ref(node)
        heap.keep()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None  # frozen: not examined, so not freed yet
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None  # freed once the job ended


def test_the_job_ends_cleanly_when_it_fails() -> None:
    before = gc.get_threshold()
    try:
        with heap.bulk_job():
            heap.keep()
            raise RuntimeError("the import failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_what_a_service_froze_at_start_stays_frozen_and_the_job_garbage_goes() -> None:
    gc.collect()
    gc.freeze()  # as ServiceRuntime.start does
    with heap.bulk_job():
        node = Node()
        gone = weakref.ref(node)
        heap.keep()
        del node
    assert gone() is None  # collected when the job ended
    assert gc.get_freeze_count() > 0  # and the service's start-up objects frozen again


def test_a_long_job_collects_what_it_froze_as_garbage_every_so_often() -> None:
    with heap.bulk_job():
        heap.keep()  # wherever the count stands, start a round of COLLECT_EVERY
        while heap._kept % heap.COLLECT_EVERY:
            heap.keep()
        node = Node()
        gone = weakref.ref(node)
        del node  # garbage (a cycle), frozen by the next keep()
        for _ in range(heap.COLLECT_EVERY - 1):
            heap.keep()
            assert gone() is not None
        heap.keep()  # the COLLECT_EVERY-th: the heap is collected before freezing again
        assert gone() is None
        assert gc.get_freeze_count() > 0

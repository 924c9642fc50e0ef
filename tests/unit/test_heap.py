"""`shared.heap`: the collector tuned for bulk jobs, and put back as it was after the last one."""

from __future__ import annotations

import gc
import weakref

from shared import heap


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

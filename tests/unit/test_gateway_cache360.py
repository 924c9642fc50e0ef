"""The customer 360 cache: complete answers kept briefly per customer and caller, one fetch at a time
per key, dropped by events about the customer, and never kept when an event overlapped the fetch;
the groups of parts an event cannot have changed kept and reused by the next fetch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.gateway.cache360 import Built, Customer360Cache, caller_key
from services.gateway.customer360 import CONSUMES, GROUPS, affected_groups
from shared.auth.tokens import Principal
from shared.events.envelope import CloudEvent

ANA = caller_key(Principal(sub="ana", kind="user", roles=frozenset({"support"})))
BOB = caller_key(Principal(sub="bob", kind="user", roles=frozenset({"support"}), branch="b-2"))


class Fetcher:
    """Counts fetches; each answer names its number. It fetches the groups of parts in `groups` it is
    not given back (`reused` records what it was given), each named by the fetch that got it; the
    groups in `down` fail (and the answer is then incomplete). `gate` holds fetches until set."""

    def __init__(
        self, *, keep: bool = True, survivor: str | None = None, groups: tuple[str, ...] = ("a", "b")
    ) -> None:
        self.calls = 0
        self.keep = keep
        self.survivor = survivor
        self.groups = groups
        self.down: set[str] = set()
        self.reused: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def __call__(self, customer_id: str) -> Any:
        async def fetch(reuse: Any) -> Built:
            self.calls += 1
            n = self.calls
            self.reused.append(dict(reuse))
            await self.gate.wait()
            fetched = {g: n for g in self.groups if g not in reuse and g not in self.down}
            keep = self.keep and not self.down
            return Built({"n": n}, frozenset({self.survivor or customer_id}), keep, fetched)

        return fetch


def event(subject: str | None, event_type: str = "crm.loyalty.points_earned.v1") -> CloudEvent:
    return CloudEvent.model_validate(
        {"id": "e", "source": "/t", "type": event_type, "specversion": "1.0", "subject": subject, "data": {}}
    )


async def test_a_complete_answer_is_kept_for_its_age_limit() -> None:
    cache, fetch = Customer360Cache(seconds=0.2), Fetcher()
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 1}
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 1}
    assert fetch.calls == 1
    await asyncio.sleep(0.45)  # past twice the limit: not served at all
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}


async def test_past_its_limit_an_answer_is_served_while_one_refresh_runs() -> None:
    cache, fetch = Customer360Cache(seconds=0.2), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    await asyncio.sleep(0.25)
    fetch.gate.clear()
    served = [await cache.get("c-1", ANA, fetch("c-1")) for _ in range(5)]
    assert served == [{"n": 1}] * 5  # at once, not waiting for the refresh …
    await asyncio.sleep(0.01)
    assert fetch.calls == 2  # … of which there is one
    fetch.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}


async def test_an_incomplete_refresh_drops_the_old_answer() -> None:
    cache, fetch = Customer360Cache(seconds=0.2), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    await asyncio.sleep(0.25)
    fetch.down = {"b"}  # a service is down now
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 1}  # stale, refresh started
    await asyncio.sleep(0.01)
    fetch.down = set()
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 3}  # fetched, not the old one …
    assert fetch.reused[-1] == {"a": 2}  # … reusing what the refresh got from the service that was up


async def test_each_caller_and_customer_has_its_own_answer() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    await cache.get("c-1", BOB, fetch("c-1"))
    await cache.get("c-2", ANA, fetch("c-2"))
    await cache.get("c-1", None, fetch("c-1"))
    assert fetch.calls == 4
    assert len(cache) == 4


async def test_concurrent_requests_share_one_fetch() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    fetch.gate.clear()
    waiting = [asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1"))) for _ in range(10)]
    await asyncio.sleep(0.01)
    fetch.gate.set()
    assert await asyncio.gather(*waiting) == [{"n": 1}] * 10
    assert fetch.calls == 1


async def test_a_caller_going_away_does_not_cancel_the_fetch_for_the_others() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    fetch.gate.clear()
    first = asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1")))
    second = asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1")))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    fetch.gate.set()
    assert await second == {"n": 1}
    assert first.cancelled()
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 1}  # and it was kept


async def test_an_incomplete_answer_is_not_kept() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher(keep=False)
    await cache.get("c-1", ANA, fetch("c-1"))
    await cache.get("c-1", ANA, fetch("c-1"))
    assert fetch.calls == 2
    assert len(cache) == 0


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    cache = Customer360Cache(seconds=5)
    calls = 0

    async def failing(reuse: Any) -> Built:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("identity down")

    results = await asyncio.gather(
        *(cache.get("c-1", ANA, failing) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert calls == 1
    with pytest.raises(RuntimeError):
        await cache.get("c-1", ANA, failing)
    assert calls == 2


async def test_an_event_about_the_customer_drops_its_answers() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    await cache.get("c-1", BOB, fetch("c-1"))
    await cache.get("c-2", ANA, fetch("c-2"))
    cache.observe(event("c-1"))
    cache.observe(event(None))  # no subject: nothing to drop
    assert len(cache) == 1
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 4}
    assert await cache.get("c-2", ANA, fetch("c-2")) == {"n": 3}


async def test_an_answer_for_a_merged_id_is_dropped_by_events_about_the_survivor() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher(survivor="c-survivor")
    await cache.get("c-old", ANA, fetch("c-old"))
    cache.observe(event("c-survivor"))
    assert len(cache) == 0


async def test_identity_changes_drop_everything() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    for customer in ("c-1", "c-2", "c-3"):
        await cache.get(customer, ANA, fetch(customer))
    cache.observe(event("c-9", "crm.identity.customer_merged.v1"))
    assert len(cache) == 0


async def test_a_fetch_overlapping_an_event_about_its_customer_is_not_kept() -> None:
    cache, fetch = Customer360Cache(seconds=5), Fetcher()
    fetch.gate.clear()
    running = asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1")))
    await asyncio.sleep(0.01)
    cache.observe(event("c-2"))  # another customer: no matter
    cache.observe(event("c-1"))  # the fetch may have read c-1 before this event
    fetch.gate.set()
    assert await running == {"n": 1}
    assert len(cache) == 0
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}
    assert len(cache) == 1


async def test_off_when_the_age_limit_is_zero() -> None:
    cache, fetch = Customer360Cache(seconds=0), Fetcher()
    for _ in range(3):
        await cache.get("c-1", ANA, fetch("c-1"))
    assert fetch.calls == 3


async def test_the_number_of_answers_kept_is_bounded() -> None:
    cache, fetch = Customer360Cache(seconds=5, max_entries=2), Fetcher()
    for customer in ("c-1", "c-2", "c-3"):
        await cache.get(customer, ANA, fetch(customer))
    assert len(cache) == 2
    await cache.get("c-1", ANA, fetch("c-1"))  # the oldest went first
    assert fetch.calls == 4
    cache.observe(event("c-1"))
    cache.observe(event("c-2"))
    cache.observe(event("c-3"))
    assert len(cache) == 0
    assert cache._by_customer == {}


# --- parts ------------------------------------------------------------------------------------------


def only(*groups: str) -> Any:
    return lambda event_type: frozenset(groups)


async def test_an_event_drops_only_the_parts_it_can_have_changed() -> None:
    cache, fetch = Customer360Cache(seconds=5, affected=only("b")), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    cache.observe(event("c-1"))
    assert len(cache) == 0  # the answer is gone …
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}
    assert fetch.reused == [{}, {"a": 1}]  # … but the next fetch reused what `b` could not change
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}  # and that answer is kept
    assert fetch.calls == 2


async def test_parts_older_than_the_age_limit_are_not_reused() -> None:
    cache, fetch = Customer360Cache(seconds=0.1, affected=only("b")), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    await asyncio.sleep(0.15)
    cache.observe(event("c-1"))
    await cache.get("c-1", ANA, fetch("c-1"))
    assert fetch.reused == [{}, {}]


async def test_a_stale_refresh_refetches_only_the_parts_past_the_limit() -> None:
    cache, fetch = Customer360Cache(seconds=0.2, affected=only("b")), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))  # a and b at t=0
    await asyncio.sleep(0.1)
    cache.observe(event("c-1"))
    await cache.get("c-1", ANA, fetch("c-1"))  # b again at t=0.1; the answer expires with a, at 0.2
    await asyncio.sleep(0.15)
    assert await cache.get("c-1", ANA, fetch("c-1")) == {"n": 2}  # stale, while …
    await asyncio.sleep(0.01)
    assert fetch.reused == [{}, {"a": 1}, {"b": 2}]  # … a refresh fetches a, still young b reused


async def test_a_part_an_event_overlapped_is_not_kept_but_the_others_are() -> None:
    cache, fetch = Customer360Cache(seconds=5, affected=only("b")), Fetcher()
    fetch.gate.clear()
    running = asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1")))
    await asyncio.sleep(0.01)
    cache.observe(event("c-1"))  # b may have been read before this event
    fetch.gate.set()
    assert await running == {"n": 1}
    assert len(cache) == 0  # no answer kept …
    await cache.get("c-1", ANA, fetch("c-1"))
    assert fetch.reused == [{}, {"a": 1}]  # … but a was


async def test_a_reused_part_an_event_dropped_during_the_fetch_is_not_kept() -> None:
    affected = {"groups": frozenset({"b"})}
    cache, fetch = Customer360Cache(seconds=5, affected=lambda t: affected["groups"]), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    cache.observe(event("c-1"))  # drops b
    fetch.gate.clear()
    running = asyncio.ensure_future(cache.get("c-1", ANA, fetch("c-1")))  # reuses a, fetches b
    await asyncio.sleep(0.01)
    affected["groups"] = frozenset({"a"})
    cache.observe(event("c-1"))  # a changed while the fetch that reused it ran
    fetch.gate.set()
    assert await running == {"n": 2}
    assert len(cache) == 0
    await cache.get("c-1", ANA, fetch("c-1"))
    assert fetch.reused == [{}, {"a": 1}, {"b": 2}]  # a fetched again; the fresh b kept


async def test_an_event_dropping_every_part_drops_the_entry() -> None:
    cache, fetch = Customer360Cache(seconds=5, affected=only("a", "b")), Fetcher()
    await cache.get("c-1", ANA, fetch("c-1"))
    cache.observe(event("c-1"))
    assert cache._entries == {}
    assert cache._by_customer == {}


# --- which parts an event can change ----------------------------------------------------------------


def test_an_event_affects_its_publisher_and_its_consumers() -> None:
    assert affected_groups("crm.loyalty.points_earned.v1") == frozenset({"loyalty", "segmentation"})
    assert affected_groups("crm.interactions.purchase_recorded.v1") == frozenset(
        {"interactions", "segmentation", "loyalty"}
    )
    assert affected_groups("crm.identity.consent_changed.v1") == frozenset({"identity"})
    assert affected_groups("crm.segmentation.segment_entered.v1") == frozenset({"segmentation", "loyalty"})
    assert affected_groups("crm.nobody.unknown.v1") is None  # unknown: everything
    assert set(GROUPS) == set(CONSUMES)


@pytest.mark.parametrize("service", ["interactions", "segmentation", "loyalty"])
def test_the_consumers_named_are_the_services_own(service: str) -> None:
    """If a service starts consuming another event, the 360 cache must learn that it changes its parts."""
    import importlib

    from shared.messaging.consumer import EventConsumer

    consumer = EventConsumer(f"crm-{service}", uow_factory=None)  # type: ignore[arg-type]
    importlib.import_module(f"services.{service}.consumers").register(consumer)
    assert frozenset(consumer.event_types) == CONSUMES[service]


def test_identity_consumes_nothing() -> None:
    import importlib.util

    assert importlib.util.find_spec("services.identity.consumers") is None
    assert CONSUMES["identity"] == frozenset()


async def test_answers_fetched_together_do_not_all_turn_stale_together() -> None:
    cache, fetch = Customer360Cache(seconds=10, jitter=0.3), Fetcher()
    before = time.monotonic()
    for n in range(50):
        await cache.get(f"c-{n}", ANA, fetch(f"c-{n}"))
    fresh_for = [entry.expires - before for entry in cache._entries.values()]
    assert all(6.9 <= f <= 10.1 for f in fresh_for)  # never past the age limit, at least 70 % of it
    assert max(fresh_for) - min(fresh_for) > 1.0  # spread over seconds, not one moment
    assert len({round(f, 3) for f in fresh_for}) > 40

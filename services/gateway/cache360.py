"""A short-lived cache of complete customer 360s, with one fetch per customer at a time.

A 360 fans out to seven service calls; a contact-centre screen or an app home page asks for the same
customer again and again within seconds. So the gateway keeps each *complete* answer (every part
`ok` or `not_found` — a partial one is never kept, so a recovered service shows at once) for
`CRM_GATEWAY_CUSTOMER360_CACHE_SECONDS` (5 s by default; 0 turns the cache off), and requests for a
customer whose 360 is being fetched wait for that fetch instead of starting seven calls of their own.

What a caller may see depends on who it is, so answers are kept per caller: the key is the customer
asked for *and* the verified principal's kind, subject, roles, scopes, customer and branch.

Freshness: an answer is served for that many seconds; for as long again after that, while the one
refresh it triggers runs (stale-while-revalidate: the entries of a busy page must not all expire into
a stampede of fetches at the same moment; a refresh that comes back incomplete drops the old answer).
Besides, every event the gateway's consumer reads about a customer (its CloudEvent `subject`) drops
that customer's answers at once — a purchase, a points movement, a segment entered; an identity
merge, unmerge or erasure drops everything. With several gateway replicas each reads only its share
of the partitions, so for the others the age limit is the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from shared.auth.tokens import Principal
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerUnmerged
from shared.events.envelope import CloudEvent

CACHE_LOOKUPS = Counter(
    "crm_gateway_customer360_cache_total",
    "Customer 360 requests by how the cache answered them: hit, stale (while it is refreshed), shared "
    "(joined a fetch in progress) or miss",
    ["outcome"],
)
# Events after which no cached 360 can be trusted (who is who changed).
IDENTITY_CHANGES = frozenset(c.full_type() for c in (CustomerMerged, CustomerUnmerged, CustomerErased))

Key = tuple[str, tuple[Any, ...] | None]


def caller_key(principal: Principal | None) -> tuple[Any, ...] | None:
    """Everything about the caller that can change what a 360 shows it."""
    if principal is None:
        return None
    scopes = tuple(sorted(principal.scopes)) if principal.scopes is not None else None
    return (
        principal.kind,
        principal.sub,
        tuple(sorted(principal.roles)),
        scopes,
        principal.customer_id,
        principal.branch,
    )


@dataclass(slots=True)
class _Entry:
    expires: float
    customers: frozenset[str]  # the id asked for and the survivor it resolved to
    value: Any


class Customer360Cache:
    def __init__(self, *, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_customer: dict[str, set[Key]] = {}
        self._fetching: dict[Key, asyncio.Future[tuple[Any, frozenset[str], bool]]] = {}
        # A fetch that overlapped an invalidation of its customer (or a clear) is not kept: it may
        # have read the state before the event. Counters exist only while a fetch is in flight.
        self._generation = 0
        self._in_flight: dict[str, list[int]] = {}  # customer → [fetches in flight, invalidations]

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    async def get(
        self,
        customer_id: str,
        caller: tuple[Any, ...] | None,
        fetch: Callable[[], Awaitable[tuple[Any, frozenset[str], bool]]],
    ) -> Any:
        """The 360 of `customer_id` for this caller: cached, shared with a fetch in progress, or
        fetched. `fetch` returns (answer, the customer ids it covers, whether it may be kept)."""
        if not self.enabled:
            return (await fetch())[0]
        key: Key = (customer_id, caller)
        entry = self._entries.get(key)
        if entry is not None:
            now = time.monotonic()
            if entry.expires > now:
                CACHE_LOOKUPS.labels("hit").inc()
                self._entries.move_to_end(key)
                return entry.value
            if entry.expires + self.seconds > now:
                # Past its age limit, but no event said it changed: answered while one refresh runs
                # in the background, so the entries of a busy page do not all expire into a stampede
                # of fetches at the same moment.
                CACHE_LOOKUPS.labels("stale").inc()
                if key not in self._fetching:
                    self._start(key, customer_id, fetch)
                return entry.value
            self._drop(key)
        running = self._fetching.get(key)
        if running is None:
            CACHE_LOOKUPS.labels("miss").inc()
            running = self._start(key, customer_id, fetch)
        else:
            CACHE_LOOKUPS.labels("shared").inc()
        value, _, _ = await asyncio.shield(running)
        return value

    def _start(
        self, key: Key, customer_id: str, fetch: Callable[[], Awaitable[tuple[Any, frozenset[str], bool]]]
    ) -> asyncio.Future[tuple[Any, frozenset[str], bool]]:
        # A task of its own: a caller that goes away does not cancel it for the others waiting.
        running = asyncio.ensure_future(self._fetch(key, customer_id, fetch))
        running.add_done_callback(_retrieve)
        self._fetching[key] = running
        return running

    async def _fetch(
        self, key: Key, customer_id: str, fetch: Callable[[], Awaitable[tuple[Any, frozenset[str], bool]]]
    ) -> tuple[Any, frozenset[str], bool]:
        generation = self._generation
        counters = self._in_flight.setdefault(customer_id, [0, 0])
        counters[0] += 1
        invalidations = counters[1]
        try:
            result = await fetch()
        finally:
            self._fetching.pop(key, None)
            counters[0] -= 1
            if counters[0] == 0:
                del self._in_flight[customer_id]
        value, customers, keep = result
        fresh = generation == self._generation and counters[1] == invalidations
        if keep and fresh:  # no event arrived meanwhile that it might predate
            self._put(key, _Entry(time.monotonic() + self.seconds, customers | {customer_id}, value))
        else:  # an answer kept before is not served stale in place of this one
            self._drop(key)
        return result

    # --- invalidation ---------------------------------------------------------------------------

    def observe(self, event: CloudEvent) -> None:
        """Drop what an event about a customer may have changed (called for every event consumed)."""
        if event.type in IDENTITY_CHANGES:
            self.clear()
        elif event.subject:
            self.invalidate(event.subject)

    def invalidate(self, customer_id: str) -> None:
        counters = self._in_flight.get(customer_id)
        if counters is not None:
            counters[1] += 1
        for key in list(self._by_customer.get(customer_id, ())):
            self._drop(key)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_customer.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # --- internals --------------------------------------------------------------------------------

    def _put(self, key: Key, entry: _Entry) -> None:
        self._drop(key)
        self._entries[key] = entry
        for customer in entry.customers:
            self._by_customer.setdefault(customer, set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for customer in entry.customers:
            keys = self._by_customer.get(customer)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_customer[customer]


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A failed fetch nobody is waiting for any more is not an unretrieved-exception warning."""
    if not task.cancelled():
        task.exception()

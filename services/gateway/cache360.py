"""A short-lived cache of customer 360s, part by part, with one fetch per customer at a time.

A 360 fans out to seven service calls; a contact-centre screen or an app home page asks for the same
customer again and again within seconds. So the gateway keeps each *complete* answer (every part
`ok` or `not_found` — a partial one is never kept, so a recovered service shows at once) for
`CRM_GATEWAY_CUSTOMER360_CACHE_SECONDS` (5 s by default; 0 turns the cache off), and requests for a
customer whose 360 is being fetched wait for that fetch instead of starting seven calls of their own.

What a caller may see depends on who it is, so answers are kept per caller: the key is the customer
asked for *and* the verified principal's kind, subject, roles, scopes, customer and branch.

Freshness: an answer is served for at most that many seconds (a random 70–100 % of it, so that
answers fetched together do not all turn stale together); for as long again after that, while the one
refresh it triggers runs (stale-while-revalidate: the entries of a busy page must not all expire into
a stampede of fetches at the same moment; a refresh that comes back incomplete drops the old answer).
Besides, every event the gateway's consumer reads about a customer (its CloudEvent `subject`) drops
that customer's answers at once — a purchase, a points movement, a segment entered; an identity
merge, unmerge or erasure drops everything. With several gateway replicas each reads only its share
of the partitions, so for the others the age limit is the bound.

Parts: an answer is assembled from *groups* of parts, one per service (the profile and consents from
identity, the timeline and complaints from interactions, …), and each group is kept with the time it
was fetched. An event drops only the groups it can have changed — `affected(event type)`, the
service that published it and those that consume it — so after a points movement the next 360
fetches loyalty and segmentation again and reuses what identity and interactions said, for as long
as those are younger than the age limit. Under a stream of purchases that is what keeps a 360 from
costing all seven calls each time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from shared.auth.tokens import Principal
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerUnmerged
from shared.events.envelope import CloudEvent

CACHE_LOOKUPS = Counter(
    "crm_gateway_customer360_cache_total",
    "Customer 360 requests by how the cache answered them: hit, stale (while it is refreshed), shared "
    "(joined a fetch in progress), partial (some parts kept, the others fetched) or miss",
    ["outcome"],
)
# Events after which no cached 360 can be trusted (who is who changed).
IDENTITY_CHANGES = frozenset(c.full_type() for c in (CustomerMerged, CustomerUnmerged, CustomerErased))

Key = tuple[str, tuple[Any, ...] | None]
ALL = "*"  # an invalidation of every group


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
class Built:
    """What one fetch produced: the answer, the customer ids it covers (the id asked for and the
    survivor it resolved to), whether the answer may be kept (complete), and the groups of parts
    it fetched that may be kept (each group's payload, as the fetch will want it back)."""

    value: Any
    customers: frozenset[str]
    keep: bool
    parts: dict[str, Any] = field(default_factory=dict)


# A fetch: given the groups still valid (group → payload), fetch the others and assemble the answer.
Fetch = Callable[[Mapping[str, Any]], Awaitable[Built]]


@dataclass(slots=True)
class _Entry:
    customers: frozenset[str]
    parts: dict[str, tuple[float, Any]]  # group → (time.monotonic() when its fetch started, payload)
    value: Any = None  # the assembled answer; None once an event dropped one of its parts
    expires: float = 0.0  # the answer's: its oldest part's time + the age limit


@dataclass(slots=True)
class _Flight:
    """Fetches of a customer in flight, and the invalidations seen meanwhile (in all and per group)."""

    fetches: int = 0
    invalidations: int = 0
    groups: Tally[str] = field(default_factory=Tally)


@dataclass(slots=True)
class _Snapshot:
    """Taken as a fetch starts: what it will compare against, and the parts it reuses."""

    generation: int
    invalidations: int
    groups: Tally[str]
    reused: dict[str, tuple[float, Any]]


class Customer360Cache:
    def __init__(
        self,
        *,
        seconds: float,
        max_entries: int = 10_000,
        affected: Callable[[str], frozenset[str] | None] | None = None,
        jitter: float = 0.3,
        refreshes: int = 2,
    ) -> None:
        self.seconds = seconds
        # Each answer is fresh for a random 70–100 % of the age limit (`jitter` 0.3): answers fetched
        # together (a page of customers, a burst after a restart) would otherwise all turn stale in the
        # same second, and their refreshes — seven service calls each — come as one wave.
        self.jitter = jitter
        # At most `refreshes` background refreshes at a time: each is seven service calls, and a
        # wave of them (a page's worth of answers turning stale) would take the CPU from the answers
        # being served meanwhile. Those are served stale until their refresh's turn comes.
        self.refreshes = refreshes
        self._refresh_slots: asyncio.Semaphore | None = None
        self.max_entries = max_entries
        # The groups an event type can change; None (or no function): all of them.
        self.affected = affected or (lambda event_type: None)
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_customer: dict[str, set[Key]] = {}
        self._fetching: dict[Key, asyncio.Future[Built]] = {}
        # What a fetch read may predate an invalidation that overlapped it: such parts (and the
        # answer) are not kept. The counters exist only while a fetch of the customer is in flight.
        self._generation = 0
        self._in_flight: dict[str, _Flight] = {}

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    async def get(self, customer_id: str, caller: tuple[Any, ...] | None, fetch: Fetch) -> Any:
        """The 360 of `customer_id` for this caller: cached, shared with a fetch in progress, or
        fetched (only the groups of parts not still kept)."""
        if not self.enabled:
            return (await fetch({})).value
        key: Key = (customer_id, caller)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry.value is not None:
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
                    self._start(key, customer_id, fetch, self._reusable(entry, now), background=True)
                return entry.value
        running = self._fetching.get(key)
        if running is not None:
            CACHE_LOOKUPS.labels("shared").inc()
        else:
            reuse = self._reusable(entry, now) if entry is not None else {}
            CACHE_LOOKUPS.labels("partial" if reuse else "miss").inc()
            running = self._start(key, customer_id, fetch, reuse)
        return (await asyncio.shield(running)).value

    def _reusable(self, entry: _Entry, now: float) -> dict[str, Any]:
        return {group: payload for group, (at, payload) in entry.parts.items() if at + self.seconds > now}

    def _start(
        self, key: Key, customer_id: str, fetch: Fetch, reuse: dict[str, Any], *, background: bool = False
    ) -> asyncio.Future[Built]:
        # What the fetch must check afterwards is noted now, before anything else can run.
        flight = self._in_flight.setdefault(customer_id, _Flight())
        flight.fetches += 1
        entry = self._entries.get(key)
        reused = {g: entry.parts[g] for g in reuse} if entry is not None else {}
        snapshot = _Snapshot(self._generation, flight.invalidations, Tally(flight.groups), reused)
        # A task of its own: a caller that goes away does not cancel it for the others waiting.
        running = asyncio.ensure_future(self._fetch(key, customer_id, fetch, snapshot, background))
        running.add_done_callback(_retrieve)
        self._fetching[key] = running
        return running

    async def _fetch(
        self, key: Key, customer_id: str, fetch: Fetch, before: _Snapshot, background: bool = False
    ) -> Built:
        flight = self._in_flight[customer_id]
        try:
            if background and self.refreshes > 0:
                if self._refresh_slots is None:
                    self._refresh_slots = asyncio.Semaphore(self.refreshes)
                async with self._refresh_slots:
                    started = time.monotonic()
                    built = await fetch({g: payload for g, (_, payload) in before.reused.items()})
            else:
                started = time.monotonic()
                built = await fetch({g: payload for g, (_, payload) in before.reused.items()})
        finally:
            self._fetching.pop(key, None)
            flight.fetches -= 1
            if flight.fetches == 0:
                del self._in_flight[customer_id]
        if before.generation != self._generation:  # everything was dropped meanwhile
            self._drop(key)
            return built
        # A group is kept if no event that could change it arrived while the fetch ran; the answer
        # only if no event about the customer did.
        everything = flight.groups[ALL] == before.groups[ALL]
        untouched = {
            g for g in (*built.parts, *before.reused) if everything and flight.groups[g] == before.groups[g]
        }
        parts = {g: at_payload for g, at_payload in before.reused.items() if g in untouched}
        parts.update({g: (started, payload) for g, payload in built.parts.items() if g in untouched})
        if not parts:
            self._drop(key)
            return built
        entry = _Entry(built.customers | {customer_id}, parts)
        if built.keep and flight.invalidations == before.invalidations:
            entry.value = built.value
            entry.expires = min(at for at, _ in parts.values()) + self.seconds * (
                1 - self.jitter * random.random()
            )
        self._put(key, entry)  # an answer kept before is never served stale in place of this one
        return built

    # --- invalidation ---------------------------------------------------------------------------

    def observe(self, event: CloudEvent) -> None:
        """Drop what an event about a customer may have changed (called for every event consumed)."""
        if event.type in IDENTITY_CHANGES:
            self.clear()
        elif event.subject:
            self.invalidate(event.subject, self.affected(event.type))

    def invalidate(self, customer_id: str, groups: frozenset[str] | None = None) -> None:
        """Drop the customer's answers, and of their parts the `groups` given (None: all)."""
        for key in list(self._by_customer.get(customer_id, ())):
            entry = self._entries[key]
            entry.value = None
            for group in groups if groups is not None else list(entry.parts):
                entry.parts.pop(group, None)
            if not entry.parts:
                self._drop(key)
        flight = self._in_flight.get(customer_id)
        if flight is not None:
            flight.invalidations += 1
            for group in groups if groups is not None else (ALL,):
                flight.groups[group] += 1

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_customer.clear()

    def __len__(self) -> int:
        """The answers kept (entries holding only parts, waiting to be reused, not counted)."""
        return sum(1 for entry in self._entries.values() if entry.value is not None)

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

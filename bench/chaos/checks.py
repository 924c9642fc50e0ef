"""After the faults: wait for the system to drain, then check every purchase's effects, exactly once.

Drained: every service's outbox is empty, every consumer group has committed up to the end of each
partition it reads, and the counts of stored purchases, earn transactions and purchase facts did not
change between two polls.

Checks (each a row of the result table; any violation makes the run fail):
  - interactions: each purchase id is stored exactly once, with its customer and total, and nothing
    else was stored; each has exactly one purchase row on the timeline;
  - loyalty: one earn transaction per purchase reference in each program, with the points the
    program's rule gives; one membership per customer and program; each member's available balance
    is the sum of its purchases' points; the ledger check (`GET /ledger/check`) passes;
  - segmentation: one purchase fact per purchase; each customer's purchase_count and total spend equal
    the stored purchases;
  - dead letters: the dead-letter topics (`crm.dlq.*`) and `dead_letters` tables are empty (each entry
    is printed otherwise);
  - the client's view: every purchase was acknowledged in the end (after the retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.chaos.load import SOURCE_SYSTEM, Purchase
from bench.chaos.topology import SERVICES, Topology

PURCHASE_TOPIC = "crm.interactions.purchases"
# Groups that must have read the purchases topic even if the run never made them commit anything.
PURCHASE_READERS = ("crm-loyalty", "crm-segmentation")


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    points_per_unit: int

    def points(self, total_minor: int) -> int:
        """The rule: `points_per_unit` per whole euro (EUR has 100 minor units), fractions dropped."""
        return (total_minor // 100) * self.points_per_unit


@dataclass
class Check:
    name: str
    expected: str
    actual: str
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


# -- draining ----------------------------------------------------------------------------------------

FINGERPRINT = {
    "interactions": "SELECT count(*) FROM purchases",
    "loyalty": "SELECT count(*) FROM ledger_transactions",
    "segmentation": "SELECT count(*) + coalesce(sum(purchase_count), 0) FROM customer_features",
}


class Probe:
    """Connections kept open between polls (the machine is busy draining: polling should cost little);
    any error closes them, and the next poll opens them again."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.conns: dict[str, asyncpg.Connection] = {}
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def conn(self, service: str) -> asyncpg.Connection:
        if service not in self.conns:
            self.conns[service] = await asyncpg.connect(self.topology.dsn(service), timeout=5)
        return self.conns[service]

    async def outbox_backlog(self) -> dict[str, int]:
        return {s: int(await (await self.conn(s)).fetchval("SELECT count(*) FROM outbox")) for s in SERVICES}

    async def fingerprint(self) -> tuple[int, ...]:
        return tuple([int(await (await self.conn(s)).fetchval(q)) for s, q in FINGERPRINT.items()])

    async def consumer_lag(self) -> dict[str, int]:
        """Per consumer group: messages not yet committed, over every partition of the topics it reads."""
        if self.admin is None or self.consumer is None:
            bootstrap = self.topology.kafka_bootstrap
            self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            await self.admin.start()
            await self.consumer.start()
        admin, consumer = self.admin, self.consumer
        groups = sorted(
            g for g, *_ in await admin.list_consumer_groups()
            if g.startswith("crm-") and not g.endswith(".dlq-replayer")
        )  # fmt: skip
        lag: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            topics = {tp.topic for tp in committed}
            if group in PURCHASE_READERS:
                topics.add(PURCHASE_TOPIC)
            tps = [
                TopicPartition(topic, p)
                for topic in sorted(topics)
                for p in sorted(consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
            ]
            ends = await consumer.end_offsets(tps) if tps else {}
            lag[group] = sum(
                max(end - (committed[tp].offset if tp in committed else 0), 0) for tp, end in ends.items()
            )
        return lag

    async def close(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
        self.conns.clear()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.close()
        self.admin = self.consumer = None


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


@dataclass
class DrainState:
    backlog: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    stable_polls: int = 0
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"waiting ({self.error})"
        return (
            f"outbox {sum(self.backlog.values())} {self.backlog}, lag {sum(self.lag.values())} {self.lag}, "
            f"stable polls {self.stable_polls}"
        )


async def wait_drained(
    topology: Topology, timeout: float, on_poll: Any = None, interval: float = 2.0
) -> tuple[bool, DrainState]:
    """Poll until outboxes are empty, lag is 0 and the counts stopped changing (twice in a row)."""
    state = DrainState()
    deadline = time.monotonic() + timeout
    last: tuple[int, ...] | None = None
    probe = Probe(topology)
    try:
        while time.monotonic() < deadline:
            current: tuple[int, ...] | None = None
            try:
                state.backlog = await probe.outbox_backlog()
                state.lag = await probe.consumer_lag() if not any(state.backlog.values()) else {}
                current = await probe.fingerprint()
                state.error = ""
            except Exception as exc:  # a server still coming back
                state.error = f"{type(exc).__name__}: {exc}"[:120]
                await probe.close()
            quiet = (
                not state.error
                and state.lag != {}
                and not any(state.backlog.values())
                and not any(state.lag.values())
            )
            state.stable_polls = state.stable_polls + 1 if quiet and current == last else 0
            last = current
            if on_poll is not None:
                on_poll(state)
            if state.stable_polls >= 2:
                return True, state
            await asyncio.sleep(interval)
    finally:
        await probe.close()
    return False, state


# -- the checks --------------------------------------------------------------------------------------


def _limited(items: list[str], limit: int = 10) -> list[str]:
    return items if len(items) <= limit else [*items[:limit], f"... and {len(items) - limit} more"]


async def check_all(
    topology: Topology,
    client: httpx.AsyncClient,
    purchases: list[Purchase],
    customer_ids: list[str],
    programs: list[Program],
    unacknowledged: list[str],
) -> tuple[list[Check], list[dict[str, Any]]]:
    """Every check; returns them with the dead letters found (printed by the caller)."""
    expected = {p.external_id: p for p in purchases}
    checks: list[Check] = []

    # -- interactions --------------------------------------------------------------------------------
    conn = await asyncpg.connect(topology.dsn("interactions"))
    try:
        rows = await conn.fetch(
            "SELECT id, external_id, customer_id, total_minor FROM purchases WHERE source_system = $1",
            SOURCE_SYSTEM,
        )
        timeline = await conn.fetch(
            "SELECT subject_id, count(*) AS n FROM interactions "
            "WHERE subject_type = 'purchase' GROUP BY subject_id"
        )
        others = int(
            await conn.fetchval("SELECT count(*) FROM purchases WHERE source_system <> $1", SOURCE_SYSTEM)
        )
    finally:
        await conn.close()
    stored = Counter(r["external_id"] for r in rows)
    purchase_ids: dict[str, str] = {}  # external id -> purchase id
    customer_of: dict[str, str] = {}  # purchase id -> customer id
    total_of: dict[str, int] = {}  # purchase id -> total
    problems: list[str] = []
    for r in rows:
        external_id = r["external_id"]
        purchase_ids[external_id] = r["id"]
        customer_of[r["id"]], total_of[r["id"]] = r["customer_id"], int(r["total_minor"])
        p = expected.get(external_id)
        if p is None:
            problems.append(f"stored but never sent: {external_id}")
            continue
        if r["customer_id"] != customer_ids[p.customer] or int(r["total_minor"]) != p.total_minor:
            problems.append(f"{external_id}: stored customer/total {r['customer_id']}/{r['total_minor']}")
    problems += [f"{e}: stored {n} times" for e, n in stored.items() if n > 1]
    missing = [e for e in expected if e not in stored]
    problems += [f"{e}: not stored" for e in missing]
    if others:
        problems.append(f"{others} purchase(s) from another source system")
    checks.append(
        Check("interactions: purchases stored once", f"{len(expected)}", f"{len(rows)}", _limited(problems))
    )
    on_timeline = {r["subject_id"]: int(r["n"]) for r in timeline}
    problems = [
        f"purchase {pid} ({e}): {on_timeline.get(pid, 0)} timeline rows"
        for e, pid in purchase_ids.items()
        if on_timeline.get(pid, 0) != 1
    ]
    checks.append(
        Check(
            "interactions: one timeline row per purchase",
            f"{len(purchase_ids)}",
            f"{sum(on_timeline.get(pid, 0) for pid in purchase_ids.values())}",
            _limited(problems),
        )
    )

    # -- loyalty -------------------------------------------------------------------------------------
    conn = await asyncpg.connect(topology.dsn("loyalty"))
    try:
        earns = await conn.fetch(
            "SELECT reference, program_id, customer_id, member_id, details::text AS details "
            "FROM ledger_transactions WHERE kind = 'earn' AND reference LIKE 'purchase:%'"
        )
        members = await conn.fetch("SELECT id, program_id, customer_id FROM members")
        available = {
            r["owner_id"]: int(r["balance"])
            for r in await conn.fetch(
                "SELECT owner_id, balance FROM accounts WHERE owner_kind = 'member' AND kind = 'available'"
            )
        }
        other_kinds = await conn.fetch(
            "SELECT kind, count(*) AS n FROM ledger_transactions WHERE kind <> 'earn' GROUP BY kind"
        )
    finally:
        await conn.close()
    by_reference: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in earns:
        by_reference[r["reference"]].append({**dict(r), "details": json.loads(r["details"] or "{}")})
    member_points: dict[str, int] = defaultdict(int)
    for program in programs:
        problems = []
        found = 0
        total_points = 0
        for external_id, purchase_id in purchase_ids.items():
            posted = by_reference.get(f"purchase:{program.id}:{purchase_id}", [])
            found += len(posted)
            want = program.points(total_of[purchase_id])
            if len(posted) != (1 if want > 0 else 0):  # a purchase earning nothing posts nothing
                problems.append(f"{external_id}: {len(posted)} earn transactions in {program.id}")
                continue
            if not posted:
                continue
            got = int(posted[0]["details"].get("points", -1))
            total_points += got
            member_points[posted[0]["member_id"]] += got
            if got != want:
                problems.append(f"{external_id}: earned {got} points in {program.id}, rule gives {want}")
            if posted[0]["customer_id"] != customer_of[purchase_id]:
                problems.append(f"{external_id}: earned for customer {posted[0]['customer_id']}")
        known = {f"purchase:{program.id}:{pid}" for pid in purchase_ids.values()}
        problems += [
            f"earn transaction for an unknown purchase: {ref}"
            for ref in by_reference
            if ref.startswith(f"purchase:{program.id}:") and ref not in known
        ]
        wants = [program.points(total_of[pid]) for pid in purchase_ids.values()]
        checks.append(
            Check(
                f"loyalty ({program.id}): one earn per purchase, {program.points_per_unit} pt/EUR",
                f"{sum(1 for w in wants if w > 0)} tx, {sum(wants)} pts",
                f"{found} tx, {total_points} pts",
                _limited(problems),
            )
        )
    memberships = Counter((r["program_id"], r["customer_id"]) for r in members)
    problems = [f"{c} has {n} memberships in {p}" for (p, c), n in memberships.items() if n > 1]
    problems += [
        f"member {r['id']} ({r['program_id']}): available {available.get(r['id'], 0)}, "
        f"earned {member_points.get(r['id'], 0)}"
        for r in members
        if available.get(r["id"], 0) != member_points.get(r["id"], 0)
    ]
    if other_kinds:
        problems.append(
            "other ledger transactions: " + ", ".join(f"{r['kind']} {r['n']}" for r in other_kinds)
        )
    checks.append(
        Check(
            "loyalty: one membership per customer, balance = points earned",
            f"{len(memberships)} members",
            f"{len(members)} members",
            _limited(problems),
        )
    )
    try:
        response = await client.get("/api/loyalty/ledger/check", timeout=60)
        report = response.json()
        problems = [] if response.status_code == 200 and report.get("ok") else [json.dumps(report)[:500]]
        actual = f"ok={report.get('ok')}, {report.get('transactions')} tx, sum {report.get('total')}"
    except (httpx.HTTPError, ValueError) as exc:
        problems, actual = [f"GET /ledger/check failed: {exc!r}"], "error"
    checks.append(Check("loyalty: ledger check (GET /ledger/check)", "ok", actual, problems))

    # -- segmentation --------------------------------------------------------------------------------
    conn = await asyncpg.connect(topology.dsn("segmentation"))
    try:
        facts = await conn.fetch("SELECT purchase_id, customer_id, total_minor FROM purchase_facts")
        features = {
            r["customer_id"]: (int(r["purchase_count"]), int(r["total_spend_minor"]))
            for r in await conn.fetch(
                "SELECT customer_id, purchase_count, total_spend_minor FROM customer_features"
            )
        }
        spend = {
            r["customer_id"]: (int(r["purchase_count"]), int(r["total_minor"]))
            for r in await conn.fetch("SELECT customer_id, purchase_count, total_minor FROM customer_spend")
        }
    finally:
        await conn.close()
    fact_count = Counter(r["purchase_id"] for r in facts)
    problems = [
        f"{e}: {fact_count.get(pid, 0)} purchase facts"
        for e, pid in purchase_ids.items()
        if fact_count.get(pid, 0) != 1
    ]
    problems += [f"fact for an unknown purchase {pid}" for pid in fact_count if pid not in customer_of]
    checks.append(
        Check(
            "segmentation: one purchase fact per purchase",
            f"{len(purchase_ids)}",
            f"{len(facts)}",
            _limited(problems),
        )
    )
    per_customer: dict[str, list[int]] = {cid: [0, 0] for cid in customer_ids}
    for pid, cid in customer_of.items():
        per_customer.setdefault(cid, [0, 0])
        per_customer[cid][0] += 1
        per_customer[cid][1] += total_of[pid]
    problems = []
    for cid, (n, spent) in per_customer.items():
        seen = features.get(cid, (0, 0))
        if seen != (n, spent):
            problems.append(f"customer {cid}: features count/spend {seen[0]}/{seen[1]}, stored {n}/{spent}")
        if n and spend.get(cid) != (n, spent):
            problems.append(f"customer {cid}: customer_spend {spend.get(cid)}, stored {n}/{spent}")
    checks.append(
        Check(
            "segmentation: purchase_count and spend per customer",
            f"{sum(c for c, _ in per_customer.values())} purchases",
            f"{sum(features.get(cid, (0, 0))[0] for cid in per_customer)} purchases",
            _limited(problems),
        )
    )

    # -- dead letters --------------------------------------------------------------------------------
    letters = await dead_letters(topology)
    checks.append(
        Check(
            "dead letters (crm.dlq.* topics, dead_letters tables)",
            "0",
            str(len(letters)),
            _limited([f"{d['where']}: {d['type']} {d['subject']}: {d['error']}" for d in letters]),
        )
    )

    # -- the client's view ---------------------------------------------------------------------------
    checks.append(
        Check(
            "client: every purchase acknowledged (after retries)",
            f"{len(expected)}",
            f"{len(expected) - len(unacknowledged)}",
            _limited([f"{e}: never acknowledged" for e in unacknowledged]),
        )
    )
    return checks, letters


async def dead_letters(topology: Topology) -> list[dict[str, Any]]:
    """Everything in the dead-letter topics (from the beginning) and in the dead_letters tables."""
    found: list[dict[str, Any]] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=topology.kafka_bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith("crm.dlq."))
    finally:
        await admin.close()
    if topics:
        consumer = AIOKafkaConsumer(bootstrap_servers=topology.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in topics for p in sorted(await _partitions(consumer, t))]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                        batch = await consumer.getmany(timeout_ms=500)
                        for records in batch.values():
                            for record in records:
                                found.append(_letter(record))
        finally:
            await consumer.stop()
    for service in SERVICES:
        conn = await asyncpg.connect(topology.dsn(service))
        try:
            for r in await conn.fetch("SELECT id, event_type, error FROM dead_letters"):
                found.append(
                    {
                        "where": f"crm_{service}.dead_letters#{r['id']}",
                        "type": r["event_type"],
                        "subject": "",
                        "error": str(r["error"])[:300],
                    }
                )
        finally:
            await conn.close()
    return found


def _letter(record: Any) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    error = f"{headers.get('dlq_error_type', '')}: {headers.get('dlq_error', '')}"
    return {
        "where": f"{record.topic}:{record.partition}:{record.offset}",
        "type": headers.get("ce_type", "?"),
        "subject": headers.get("ce_subject", ""),
        "error": error[:300],
    }

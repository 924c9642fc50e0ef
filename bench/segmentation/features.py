"""Segmentation at scale (PostgreSQL): one event to updated features, and the full recompute.

Loads `--customers` customers with `--purchases` purchases over five years, generated inside PostgreSQL
(seeded; `load`): customers acquired over the years, each buying until they lapse. Then:

* full recompute, with a handful of rule segments defined (`SEGMENTS`, as in production): every
  customer's features from all the facts with their value, risk and stage and their segments
  (`service.recompute`, what `POST /features/recompute` runs), then the scheduled population pass
  (RFM cut points, CLV fit, tier floors, everyone re-scored) and every rule segment re-applied — each
  step timed, beside the bare aggregate query over the same facts, with the peak memory of the process
  (and its growth during the recompute);
* real time: `--events` purchase events handled one at a time exactly as the consumer handles them
  (store the fact, recompute the customer's features, then every `on_refreshed` hook: value, risk,
  ladder stage and segment membership — in one transaction) — median / p95 / p99, the main figure;
  the same with the hooks off (features only); and a baseline measured in the same run: one indexed
  INSERT plus one primary-key UPDATE in a transaction, the least any "update the customer's
  aggregates" can cost.

    python -m bench.segmentation.features --customers 100000 --purchases 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.identity.databases import fresh_databases

CHANNELS = ["store", "web", "app", "phone"]
# Rule segments as a deployment has them: features, value/risk/stage, windows over the facts, a reference.
SEGMENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "Valuable regulars",
        {
            "all": [
                {"purchases": {"within_days": 365, "at_least": 3}},
                {"field": "channels", "op": "contains", "value": "web"},
                {"not": {"field": "value_tier", "op": "=", "value": "rest"}},
            ]
        },
    ),
    (
        "VIP at risk",
        {
            "all": [
                {"field": "value_tier", "op": "in", "value": ["top", "high"]},
                {"field": "risk_level", "op": "=", "value": "high"},
            ]
        },
    ),
    ("Lapsed", {"field": "days_since_last_purchase", "op": ">=", "value": 180}),
    (
        "Loyal clients",
        {
            "all": [
                {"field": "ladder_stage", "op": ">=", "value": "client"},
                {"field": "net_spend_minor", "op": ">=", "value": 50_000},
            ]
        },
    ),
    ("Big spenders this year", {"spend": {"within_days": 365, "currency": "EUR", "at_least": 100_000}}),
    (
        "Unhappy",
        {
            "any": [
                {"field": "nps_category", "op": "=", "value": "detractor"},
                {"field": "unanswered_complaints", "op": ">", "value": 0},
            ]
        },
    ),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values) * 1000, "p95": pct(values, 0.95), "p99": pct(values, 0.99)}


def rss_mib() -> float:
    """The process's current resident memory (Linux), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def define_segments(runtime: Any) -> list[str]:
    from services.segmentation.segments import service as segments
    from services.segmentation.segments.schemas import SegmentIn

    ids: list[str] = []
    for name, rule in SEGMENTS:
        created = await segments.create(runtime.uow(), SegmentIn(name=name, rule=rule))
        ids.append(created.segment.id)
    # One segment built on another (evaluated after it).
    omni = {"all": [{"in_segment": ids[0]}, {"field": "multichannel", "op": "=", "value": True}]}
    ids.append(
        (await segments.create(runtime.uow(), SegmentIn(name="Omnichannel regulars", rule=omni))).segment.id
    )
    return ids


async def reapply_segments(runtime: Any, now: datetime | None = None) -> int:
    """Every rule segment re-applied over everyone (after the population pass moved tiers)."""
    from services.segmentation.segments import rules
    from services.segmentation.segments import service as segments

    async with runtime.uow() as uow:
        everything = getattr(segments, "reapply_all", None)
        if everything is not None:
            count = int(await everything(uow, cause="schedule", now=now))
        else:
            count = 0
            for level in segments.evaluation_order(await segments._all_segments(uow.session)):
                for segment in level:
                    await segments.apply_rule(uow, segment, rules.parse(segment.definition), cause="schedule")
                    count += 1
        await uow.commit()
    return count


async def a_day_of_purchases(
    runtime: Any, customers: list[str], purchases: int, start: datetime, rng: random.Random
) -> int:
    """The purchases of one day after `start` (the five years' average), through the consumer's batch
    handler as they would arrive: facts, features, value and segments of their customers kept current."""
    from services.segmentation import service
    from shared.contracts.interactions import PurchaseLine, PurchaseRecorded

    count = max(1, purchases // (5 * 365))
    events = []
    for _ in range(count):
        total = rng.randrange(500, 30_000)
        events.append(
            PurchaseRecorded(
                purchase_id=str(uuid.uuid4()),
                customer_id=rng.choice(customers),
                channel=rng.choice(CHANNELS),
                occurred_at=start + timedelta(seconds=rng.randrange(86_400)),
                currency="EUR",
                total_minor=total,
                lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=total)],
            )
        )
    for first in range(0, count, 500):
        async with runtime.uow() as uow:
            await service.on_purchases_recorded(uow, events[first : first + 500])
            await uow.commit()
    return count


async def settle(dsn: str) -> float:
    """VACUUM ANALYZE and a CHECKPOINT (what the server would do on its own after bulk rewrites);
    returns the seconds they took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def events_latency(runtime: Any, customers: list[str], events: int, rng: random.Random) -> list[float]:
    from services.segmentation import service
    from shared.contracts.interactions import PurchaseLine, PurchaseRecorded

    latencies = []
    now = datetime.now(UTC)
    for _ in range(events):
        event = PurchaseRecorded(
            purchase_id=str(uuid.uuid4()),
            customer_id=rng.choice(customers),
            channel=rng.choice(CHANNELS),
            occurred_at=now,
            currency="EUR",
            total_minor=2500,
            lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=2500)],
        )
        t0 = time.perf_counter()
        async with runtime.uow() as uow:
            await service.on_purchase_recorded(uow, event)
            await uow.commit()
        latencies.append(time.perf_counter() - t0)
    return latencies


# The purchases, generated inside PostgreSQL (seeded): each customer is acquired at a random moment of
# the five years and stays alive for an exponential span (mean two years, so many have lapsed by now),
# buying at moments uniform over that span; who buys is skewed (70 % uniform, 30 % Pareto: a few
# customers buy a lot), and each customer has their own typical basket (gamma distributed, mean 60 EUR)
# that a purchase varies around by ±50 %. A "buy till you die" population, as BG/NBD and Gamma-Gamma
# model one.
_GENERATE = """
INSERT INTO purchase_facts
    (purchase_id, customer_id, origin_customer_id, occurred_at, currency, total_minor, channel)
SELECT md5('p' || g.i)::uuid::text, c.customer_id, c.customer_id,
       $1::timestamptz - make_interval(secs => c.born - (c.born - c.dies) * g.u),
       'EUR', greatest(100, floor(c.basket * (0.5 + g.v)))::bigint,
       (ARRAY['store', 'web', 'app', 'phone'])[1 + floor(g.w * 4)::int]
FROM (
    SELECT i,
           CASE WHEN random() < 0.7 THEN floor(random() * $2)::int
                ELSE least($2 - 1, floor(1 / power(1 - random(), 1 / 1.2))::int - 1) END AS idx,
           random() AS u, random() AS v, random() AS w
    FROM generate_series(1, $3) AS g(i)
) AS g
JOIN bench_customers AS c ON c.idx = g.idx
"""
_SPAN = 5 * 365 * 86_400


async def load(dsn: str, customers: list[str], purchases: int, rng: random.Random) -> float:
    """`purchases` purchases of `customers` into `purchase_facts`, generated by PostgreSQL itself
    (seeded from `rng`); the table's indexes are dropped during the load and built again after it,
    as a bulk load does. Returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        lives = []
        for i, customer in enumerate(customers):
            born = rng.randrange(_SPAN)  # seconds before now
            dies = max(0, born - int(rng.expovariate(1 / (2 * 365 * 86_400))))
            basket = rng.gammavariate(2.0, 3_000.0)  # minor units
            lives.append((i, customer, born, dies, basket))
        await conn.execute(
            "CREATE TEMP TABLE bench_customers "
            "(idx int PRIMARY KEY, customer_id text, born bigint, dies bigint, basket float8)"
        )
        await conn.copy_records_to_table("bench_customers", records=lives)
        await conn.execute("ANALYZE bench_customers")
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'purchase_facts' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p')"
        )
        primary = await conn.fetchrow(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
            "WHERE conrelid = 'purchase_facts'::regclass AND contype = 'p'"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        if primary is not None:
            await conn.execute(f'ALTER TABLE purchase_facts DROP CONSTRAINT "{primary["conname"]}"')
        await conn.execute("SELECT setseed($1)", rng.random() * 2 - 1)
        await conn.execute(_GENERATE, now, len(customers), purchases)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        if primary is not None:
            await conn.execute(
                f'ALTER TABLE purchase_facts ADD CONSTRAINT "{primary["conname"]}" {primary["definition"]}'
            )
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def measure(url: str, customers_n: int, purchases: int, events: int) -> dict[str, Any]:
    from services.segmentation import service
    from services.segmentation.app import build
    from services.segmentation.settings import load_settings
    from services.segmentation.value import service as value
    from shared.messaging.bus import InProcessBus

    rng = random.Random(5)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()  # the outbox is not what is measured
    customers = [str(uuid.uuid4()) for _ in range(customers_n)]
    figures: dict[str, Any] = {"customers": customers_n, "purchases": purchases}
    try:
        figures["load_seconds"] = await load(dsn, customers, purchases, rng)
        figures["segments"] = len(await define_segments(runtime))
        rss_before = rss_mib()
        steps: dict[str, float] = {}
        started = time.perf_counter()
        figures["recompute_customers"] = await service.recompute(runtime.uow())
        steps["features_value_segments"] = time.perf_counter() - started
        figures["features_recompute_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        async with runtime.uow() as uow:
            population = await value.recompute_population(uow.session, uow)
            await uow.commit()
        steps["population_pass"] = time.perf_counter() - t0
        figures["clv_fitted"] = population.get("clv_model") is not None
        t0 = time.perf_counter()
        await reapply_segments(runtime)
        steps["segments_reapplied"] = time.perf_counter() - t0
        figures["recompute_steps_seconds"] = steps
        figures["recompute_seconds"] = time.perf_counter() - started
        # The target's figure: the scheduled full recompute of RFM, CLV, tiers and every segment over
        # the features as the events left them (the rebuild of the features from the facts before it
        # is the replay, reported beside it).
        figures["full_recompute_seconds"] = steps["population_pass"] + steps["segments_reapplied"]
        # The same scheduled recompute a day later, as it runs every day: a day's purchases arrived
        # through the consumer (features, value and segments of their customers kept current), then
        # RFM cut points, CLV, tiers and every segment recomputed over everyone at the next day.
        later = datetime.now(UTC) + timedelta(days=1)
        figures["day_purchases"] = await a_day_of_purchases(
            runtime, customers, purchases, later - timedelta(days=1), rng
        )
        t0 = time.perf_counter()
        async with runtime.uow() as uow:
            day = await value.recompute_population(uow.session, uow, now=later)
            await uow.commit()
        day_steps = {"population_pass": time.perf_counter() - t0}
        t0 = time.perf_counter()
        await reapply_segments(runtime, now=later)
        day_steps["segments_reapplied"] = time.perf_counter() - t0
        figures["day_later_steps_seconds"] = day_steps
        figures["day_later_recompute_seconds"] = sum(day_steps.values())
        figures["day_later_value_changes"] = {k: day.get(k) for k in ("ladder_changes", "at_risk_published")}
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["rss_before_recompute_mib"] = rss_before
        # The real-time figure is for a settled database: the passes above rewrote a million rows
        # several times, and the vacuum and checkpoint that follow (autovacuum would run them now,
        # for minutes) are done before the events, not during them.
        figures["settle_seconds"] = await settle(dsn)
        latencies = await events_latency(runtime, customers, events, rng)
        figures["event_to_features_value_segments_ms"] = summary(latencies)
        hooks = list(service._HOOKS)
        service._HOOKS.clear()
        try:
            figures["event_to_features_only_ms"] = summary(
                await events_latency(runtime, customers, events, rng)
            )
        finally:
            service._HOOKS.extend(hooks)
    finally:
        await runtime.stop()
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.fetch(
            "SELECT customer_id, currency, count(*), sum(total_minor), min(occurred_at), max(occurred_at) "
            "FROM purchase_facts GROUP BY customer_id, currency"
        )
        figures["baseline_aggregate_seconds"] = time.perf_counter() - t0
        await conn.execute("CREATE TEMP TABLE b_facts (LIKE purchase_facts INCLUDING ALL)")
        await conn.execute("CREATE TEMP TABLE b_agg (customer_id text PRIMARY KEY, n int, total bigint)")
        await conn.executemany(
            "INSERT INTO b_agg VALUES ($1, 0, 0)", [(c,) for c in customers[: max(events, 1)]]
        )
        baseline = []
        for i in range(events):
            customer = customers[i % max(events, 1)]
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO b_facts (purchase_id, customer_id, origin_customer_id, occurred_at, "
                    "currency, total_minor, channel) VALUES ($1, $2, $2, now(), 'EUR', 2500, 'web')",
                    str(uuid.uuid4()),
                    customer,
                )
                await conn.execute(
                    "UPDATE b_agg SET n = n + 1, total = total + 2500 WHERE customer_id = $1", customer
                )
            baseline.append(time.perf_counter() - t0)
        figures["baseline_event_ms"] = summary(baseline)
    finally:
        await conn.close()
    return figures


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--postgres", default="postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=2_000_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    from shared.logging import configure_logging

    configure_logging("WARNING", json=False)
    with fresh_databases(args.postgres, 1) as (url,):
        assert url is not None
        figures = asyncio.run(measure(url, args.customers, args.purchases, args.events))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segmentation_features.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    event, only = figures["event_to_features_value_segments_ms"], figures["event_to_features_only_ms"]
    base = figures["baseline_event_ms"]
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in figures["recompute_steps_seconds"].items())
    print(
        f"one purchase event to updated features, value/risk/ladder and {figures['segments']} segments "
        f"({args.customers:,} customers, {args.purchases:,} purchases): median {event['median']:.1f} ms, "
        f"p95 {event['p95']:.1f} ms, p99 {event['p99']:.1f} ms (target 20 ms); features only: median "
        f"{only['median']:.1f} ms, p99 {only['p99']:.1f} ms; baseline INSERT+UPDATE median "
        f"{base['median']:.2f} ms, p99 {base['p99']:.2f} ms.\nFull recompute of RFM, CLV, tiers and every "
        f"segment: {figures['full_recompute_seconds']:.1f} s after a replay, "
        f"{figures['day_later_recompute_seconds']:.1f} s a day later (target 60 s); with the features "
        f"rebuilt from the facts first: {figures['recompute_seconds']:.1f} s ({steps}; the bare "
        f"aggregate query {figures['baseline_aggregate_seconds']:.1f} s), peak memory "
        f"{figures['peak_rss_mib']:.0f} MiB ({figures['rss_before_recompute_mib']:.0f} MiB before it)"
    )


if __name__ == "__main__":
    main()

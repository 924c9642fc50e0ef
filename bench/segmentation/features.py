"""Segmentation at scale (PostgreSQL): one event to updated features, and the full recompute.

Loads `--customers` customers with `--purchases` purchases spread over five years (seeded), straight
into the segmentation database by COPY. Then:

* real time: `--events` purchase events handled one at a time exactly as the consumer handles them
  (store the fact, recompute the customer's features, in one transaction) — median / p95 / p99 —
  beside a baseline measured in the same run: one indexed INSERT plus one primary-key UPDATE in a
  transaction, the least any "update the customer's aggregates" can cost;
* full recompute: every customer's features from all the facts (`POST /features/recompute`), beside
  the bare aggregate query over the same facts, with the peak memory of the process.

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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values) * 1000, "p95": pct(values, 0.95), "p99": pct(values, 0.99)}


async def load(dsn: str, customers: list[str], purchases: int, rng: random.Random) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        batch = 200_000
        for start in range(0, purchases, batch):
            rows = []
            for _ in range(min(batch, purchases - start)):
                # A skewed population: a few customers buy a lot.
                customer = customers[min(len(customers) - 1, int(rng.paretovariate(1.2)) - 1)]
                if rng.random() < 0.7:
                    customer = rng.choice(customers)
                rows.append(
                    (
                        str(uuid.uuid4()),
                        customer,
                        now - timedelta(seconds=rng.randrange(5 * 365 * 86_400)),
                        "EUR",
                        rng.randrange(500, 30_000),
                        rng.choice(CHANNELS),
                        customer,
                    )
                )
            await conn.copy_records_to_table(
                "purchase_facts",
                records=rows,
                columns=[
                    "purchase_id",
                    "customer_id",
                    "occurred_at",
                    "currency",
                    "total_minor",
                    "channel",
                    "origin_customer_id",
                ],
            )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def measure(url: str, customers_n: int, purchases: int, events: int) -> dict[str, Any]:
    from services.segmentation import service
    from services.segmentation.app import build
    from services.segmentation.settings import load_settings
    from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
    from shared.messaging.bus import InProcessBus

    rng = random.Random(5)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    customers = [str(uuid.uuid4()) for _ in range(customers_n)]
    figures: dict[str, Any] = {"customers": customers_n, "purchases": purchases}
    try:
        figures["load_seconds"] = await load(dsn, customers, purchases, rng)
        started = time.perf_counter()
        figures["recompute_customers"] = await service.recompute(runtime.uow())
        figures["recompute_seconds"] = time.perf_counter() - started
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        figures["event_to_features_ms"] = summary(latencies)
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
                    "INSERT INTO b_facts VALUES ($1, $2, now(), 'EUR', 2500, 'web')",
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
    event, base = figures["event_to_features_ms"], figures["baseline_event_ms"]
    print(
        f"one purchase event to updated features ({args.customers:,} customers, "
        f"{args.purchases:,} purchases): "
        f"median {event['median']:.1f} ms, p99 {event['p99']:.1f} ms (target 20 ms); baseline INSERT+UPDATE "
        f"p99 {base['p99']:.2f} ms. Full recompute: {figures['recompute_seconds']:.1f} s (the bare aggregate "
        f"query {figures['baseline_aggregate_seconds']:.1f} s), peak memory {figures['peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()

"""A service's purchase consumer on PostgreSQL: events/s as Kafka hands them over, in batches.

On a fresh database with the service's schema (`--service loyalty` or `segmentation`): `--customers`
customers (registered), then `--events` `purchase_recorded` events handled by the service's own
consumer (`EventConsumer.handle_batch`, exactly what the Kafka backend calls for each polled partition
batch: inbox claim, then each event's handler — for loyalty earning rules, ledger posting, lots,
outbox; for segmentation the fact, features, value, risk, stage, segments) in batches of `--batch` —
events/s and the time per
event, the SQL statements per event and the service process's CPU time per event (both independent of
what else the machine is doing). `--profile` writes a cProfile of the run (to see where the time goes).

Baseline, same database, same run: the same number of rows inserted one statement each, one
transaction per batch of the same size (the least any handler writing one row per event can cost).

    python -m bench.consume --service loyalty --postgres postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import pstats
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.identity.databases import fresh_databases
from bench.results import Figure, write_result
from shared.contracts.identity import CustomerRegistered
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.events.envelope import new_event
from shared.messaging.bus import InProcessBus
from shared.messaging.consumer import Delivery
from shared.migrations import upgrade


def _event(payload: Any, subject: str) -> Delivery:
    del subject  # the envelope's subject is the payload's own (the customer id)
    return Delivery(event=new_event(payload, source="/bench/interactions"), topic=payload.topic.name)


def purchases(customers: list[str], count: int, seed: int) -> list[Delivery]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        customer = rng.choice(customers)
        total = rng.randint(500, 30_000)
        payload = PurchaseRecorded(
            purchase_id=f"p-{i}-{uuid.uuid4().hex[:6]}",
            customer_id=customer,
            channel=rng.choice(["store", "web", "app"]),
            occurred_at=start + timedelta(minutes=i),
            currency="EUR",
            total_minor=total,
            lines=[PurchaseLine(sku=f"sku-{rng.randint(1, 50)}", quantity=1, unit_price_minor=total)],
            payment_status="paid",
        )
        out.append(_event(payload, customer))
    return out


async def run(
    service: str, url: str, customers: int, events: int, batch: int, profile: Path | None, trace: bool = False
) -> dict[str, Any]:
    app = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.settings")
    await upgrade(url, app.MIGRATIONS)
    runtime = app.build(settings.load_settings(database_url=url, run_migrations=False), bus=InProcessBus())
    consumer = runtime.consumer
    ids = [str(uuid.uuid4()) for _ in range(customers)]
    now = datetime.now(UTC)
    registered = [
        _event(CustomerRegistered(customer_id=c, kind="person", status="customer", registered_at=now), c)
        for c in ids
    ]
    for start in range(0, len(registered), 1000):
        await consumer.handle_batch(registered[start : start + 1000])
    # Warm-up (first enrolments, statement caches), not timed.
    await consumer.handle_batch(purchases(ids, min(200, events), seed=1))
    work = purchases(ids, events, seed=2)
    statements = 0

    last: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal statements
        statements += 1
        if trace:
            last.append(" ".join(statement.split())[:160])

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    cpu = time.process_time()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    began = time.perf_counter()
    for start in range(0, len(work), batch):
        dead = await consumer.handle_batch(work[start : start + batch])
        assert not dead, dead[0].error
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    if trace:
        print("\n".join(last[-40:]))
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
        pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(40)
    async with runtime.engine.connect() as conn:
        inbox = runtime.tables.inbox.name
        handled = (await conn.execute(text(f"SELECT count(*) FROM {inbox}"))).scalar_one()
    baseline = await _baseline(runtime.engine, events, batch)
    await runtime.engine.dispose()
    return {
        "service": service,
        "events": events,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "ms_per_event": round(elapsed / events * 1000, 3),
        "statements_per_event": round(statements / events, 2),
        "python_cpu_ms_per_event": round(cpu / events * 1000, 3),
        "inbox_rows": handled,
        "baseline_rows_per_s": round(baseline, 1),
        "ratio_to_baseline": round((events / elapsed) / baseline, 4),
    }


async def _baseline(engine: Any, count: int, batch: int) -> float:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE bench_rows (id text PRIMARY KEY, n integer)"))
    began = time.perf_counter()
    for start in range(0, count, batch):
        async with engine.begin() as conn:
            for i in range(start, min(start + batch, count)):
                await conn.execute(text("INSERT INTO bench_rows VALUES (:id, :n)"), {"id": f"r{i}", "n": i})
    return count / (time.perf_counter() - began)


def figures(results: list[dict[str, Any]]) -> list[Figure]:
    out: list[Figure] = []
    for r in results:
        name = r["service"].capitalize()
        out.append(
            Figure(
                f"{name}: purchase events handled per second — {r['events']:,} events, batches of "
                f"{r['batch']}, {r['customers']:,} customers",
                "events/s",
                r["events_per_s"],
                baseline=r["baseline_rows_per_s"],
                baseline_name="one INSERT per event, a transaction per batch",
            )
        )
        out.append(Figure(f"{name}: SQL statements per event", "statements", r["statements_per_event"]))
        out.append(
            Figure(
                f"{name}: the service process's CPU time per event",
                "ms",
                r["python_cpu_ms_per_event"],
                higher_is_better=False,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--service", choices=["loyalty", "segmentation", "all"], default="all")
    parser.add_argument("--postgres", default="postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--out", type=Path, help="write consumers.json (the report's schema) here")
    parser.add_argument("--trace", action="store_true", help="print the SQL of the last events")
    args = parser.parse_args()
    services = ["loyalty", "segmentation"] if args.service == "all" else [args.service]
    results = []
    for service in services:
        with fresh_databases(args.postgres, 1) as (url,):
            assert url is not None
            result = asyncio.run(
                run(service, url, args.customers, args.events, args.batch, args.profile, args.trace)
            )
        result["customers"] = args.customers
        print(json.dumps(result, indent=2))
        results.append(result)
    if args.out:
        write_result(
            args.out,
            "consumers",
            "Consumers: purchase events per second",
            figures(results),
            {"runs": results},
        )


if __name__ == "__main__":
    main()

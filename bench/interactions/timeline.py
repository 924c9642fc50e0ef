"""First page of the timeline of a customer with 100,000 contacts (PostgreSQL).

Loads the interactions database with one busy customer (`--events`, default 100,000 contacts over
five years on every channel) among `--others` contacts of 20,000 other customers, by COPY, then
`VACUUM ANALYZE`. Then times `--requests` first-page reads of the busy customer's timeline through
the interactions service's HTTP API (in process: routing, validation, the query and the JSON), the
same for a filtered page (`kind=complaint`, about 2% of contacts) and a deep page (cursor), beside a
baseline measured in the same run: the same first-page SELECT sent straight through asyncpg.

    python -m bench.interactions.timeline --postgres postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.identity.databases import fresh_databases

CHANNELS = ["store", "phone", "email", "web", "chat", "sms", "app", "social"]
KINDS = ["inquiry"] * 30 + ["web_activity"] * 40 + ["purchase"] * 20 + ["note"] * 8 + ["complaint"] * 2


def _rows(customer_id: str, count: int, rng: random.Random, start: datetime) -> list[tuple[Any, ...]]:
    span = (datetime.now(UTC) - start).total_seconds()
    rows = []
    for _ in range(count):
        at = start + timedelta(seconds=rng.random() * span)
        rows.append(
            (
                str(uuid.uuid4()),
                customer_id,
                customer_id,
                rng.choice(KINDS),
                rng.choice(CHANNELS),
                "inbound",
                at,
                at,
                "bench",
                None,
                None,
                "a contact",
                None,
                "[]",
                "{}",
                None,
                None,
                False,
            )
        )
    return rows


COLUMNS = [
    "id", "customer_id", "origin_customer_id", "kind", "channel", "direction", "occurred_at", "recorded_at",
    "source_system", "idempotency_key", "agent_id", "summary", "text", "tags", "attributes", "subject_type",
    "subject_id", "erased",
]  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values) * 1000, "p95": pct(values, 0.95), "p99": pct(values, 0.99)}


async def load(dsn: str, busy: str, events: int, others: int) -> float:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=5 * 365)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO known_customers (customer_id, learned_at) VALUES ($1, now())", busy)
        batch = 20_000
        for offset in range(0, events, batch):
            rows = _rows(busy, min(batch, events - offset), rng, start)
            await conn.copy_records_to_table("interactions", records=rows, columns=COLUMNS)
        customers = [str(uuid.uuid4()) for _ in range(20_000)]
        for _ in range(0, others, batch):
            rows = [r for c in rng.sample(customers, 2_000) for r in _rows(c, batch // 2_000, rng, start)]
            await conn.copy_records_to_table("interactions", records=rows, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE interactions")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def measure(url: str, events: int, others: int, requests: int) -> dict[str, Any]:
    from services.interactions.app import build
    from services.interactions.settings import load_settings
    from shared.messaging.bus import InProcessBus

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()  # migrations
    busy = str(uuid.uuid4())
    seconds_load = await load(dsn, busy, events, others)
    figures: dict[str, Any] = {"events": events, "other_events": others, "load_seconds": seconds_load}
    transport = httpx.ASGITransport(app=runtime.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://interactions") as client:
            path = f"/customers/{busy}/timeline"
            first = (await client.get(path)).json()
            deep_cursor = None
            page = first
            for _ in range(20):  # 20 pages in: 1,000 contacts back
                deep_cursor = page["next_cursor"]
                page = (await client.get(path, params={"cursor": deep_cursor})).json()
            cases: dict[str, dict[str, str]] = {
                "first_page": {},
                "filtered_first_page": {"kind": "complaint"},
                "page_21": {"cursor": str(deep_cursor)},
            }
            for name, params in cases.items():
                for _ in range(20):  # warm up
                    await client.get(path, params=params)
                latencies = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    response = await client.get(path, params=params)
                    latencies.append(time.perf_counter() - t0)
                    assert response.status_code == 200, response.text
                figures[name] = summary(latencies)
    finally:
        await runtime.stop()
    conn = await asyncpg.connect(dsn)
    try:
        statement = await conn.prepare(
            "SELECT * FROM interactions WHERE customer_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT 51"
        )
        baseline = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await statement.fetch(busy)
            baseline.append(time.perf_counter() - t0)
        figures["baseline_select"] = summary(baseline)
    finally:
        await conn.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server URL (…/postgres)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=400_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    from shared.logging import configure_logging

    configure_logging("WARNING", json=False)
    with fresh_databases(args.postgres, 1) as (url,):
        assert url is not None
        figures = asyncio.run(measure(url, args.events, args.others, args.requests))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "interactions_timeline.json").write_text(json.dumps(figures, indent=2))
    first, base = figures["first_page"], figures["baseline_select"]
    print(json.dumps(figures, indent=2))
    print(
        f"timeline of a customer with {args.events:,} contacts, first page through the API: "
        f"median {first['median']:.2f} ms, p99 {first['p99']:.2f} ms (target < 20 ms: "
        f"{'MET' if first['p99'] < 20 else 'NOT MET'}); the bare SELECT: p99 {base['p99']:.2f} ms, "
        f"ratio {first['p99'] / base['p99']:.1f}×"
    )


if __name__ == "__main__":
    main()

"""Bulk ingestion of contacts through the gateway, in distributed mode, into PostgreSQL and Kafka.

Needs the distributed topology running (`make up`: Kafka, PostgreSQL, each service its own process).
Creates `--customers` customers through the gateway, then posts `--items` contacts in batches of
`--batch` to `POST /api/interactions/interactions/bulk` from `--concurrency` concurrent clients, and
waits until the interactions service's outbox is empty — every contact stored AND its event
acknowledged by Kafka (the relay deletes an outbox row only after the broker's ack). Prints
contacts/s acknowledged to the clients and contacts/s end to end, beside a baseline measured in the
same run: the same rows inserted with a plain `INSERT … VALUES` executemany through asyncpg.

    python -m bench.interactions.ingest --items 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.loadgen import auth_headers

GOAL = 5_000  # contacts/s sustained, end to end


async def customers(client: httpx.AsyncClient, count: int) -> list[str]:
    semaphore = asyncio.Semaphore(8)
    run = uuid.uuid4().hex[:8]

    async def one(i: int) -> str:
        async with semaphore:
            body = {
                "given_name": f"Bench{i}",
                "family_name": f"Ingest{run}",
                "email": f"b{i}.{run}@example.com",
            }
            response = await client.post("/api/identity/customers", json=body)
            response.raise_for_status()
            return str(response.json()["customer"]["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def contact(customer_id: str, rng: random.Random, now: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": rng.choice(["web", "app", "phone", "email", "store"]),
        "direction": "inbound",
        "kind": rng.choice(["web_activity", "app_activity", "inquiry", "visit"]),
        "occurred_at": (now - timedelta(seconds=rng.randrange(86_400))).isoformat(),
        "source_system": "bench",
        "idempotency_key": uuid.uuid4().hex,
        "tags": ["bench"],
        "attributes": {"page": f"/p/{rng.randrange(500)}"},
    }


async def outbox_rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox"))


async def drained_outbox(conn: asyncpg.Connection) -> None:
    """Wait until the relay has published everything (polling the table: the relay is another process)."""
    for _ in range(6000):
        if not await outbox_rows(conn):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the outbox did not drain in 10 minutes")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(11)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(args.interactions_dsn)
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(
        base_url=args.gateway, timeout=120, limits=limits, headers=auth_headers()
    ) as client:
        ids = await customers(client, args.customers)
        batches = [
            [contact(rng.choice(ids), rng, now) for _ in range(args.batch)]
            for _ in range(args.items // args.batch)
        ]
        warm_up = [contact(rng.choice(ids), rng, now) for _ in range(50)]  # keys of its own
        warm = await client.post("/api/interactions/interactions/bulk", json={"items": warm_up})
        warm.raise_for_status()
        await drained_outbox(conn)
        stored_before = int(await conn.fetchval("SELECT count(*) FROM interactions"))
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        latencies: list[float] = []
        backlog: list[tuple[float, int]] = []

        async def worker() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                t0 = time.perf_counter()
                response = await client.post("/api/interactions/interactions/bulk", json={"items": batch})
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()
                if response.json()["created"] != len(batch):
                    raise RuntimeError(
                        f"a batch was not fully recorded: {response.json()['rejected']} rejected"
                    )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        acked = time.perf_counter()
        while (pending := await outbox_rows(conn)) > 0:
            backlog.append((time.perf_counter() - started, pending))
            await asyncio.sleep(0.1)
        drained = time.perf_counter()
        stored = int(await conn.fetchval("SELECT count(*) FROM interactions")) - stored_before
    # Baseline: the same rows, plain INSERT … VALUES through asyncpg, into a scratch copy of the table.
    await conn.execute("CREATE TEMP TABLE interactions_baseline (LIKE interactions INCLUDING ALL)")
    rows = [
        (
            str(uuid.uuid4()), item["customer_id"], item["customer_id"], item["kind"], item["channel"],
            "inbound", datetime.fromisoformat(item["occurred_at"]), now, "bench", item["idempotency_key"],
            None, None, None, json.dumps(item["tags"]), json.dumps(item["attributes"]), None, None, False,
        )
        for batch in batches
        for item in batch
    ]  # fmt: skip
    t0 = time.perf_counter()
    for start in range(0, len(rows), args.batch):
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO interactions_baseline VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
                "$12, $13, $14::json, $15::json, $16, $17, $18)",
                rows[start : start + args.batch],
            )
    baseline = time.perf_counter() - t0
    await conn.close()
    n = len(batches) * args.batch
    ordered = sorted(latencies)
    return {
        "items": n,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "stored": stored,
        "acknowledged_per_second": n / (acked - started),
        "end_to_end_per_second": n / (drained - started),
        "seconds_to_acknowledge": acked - started,
        "seconds_to_drain": drained - started,
        "batch_latency_ms": {
            "median": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        },
        "outbox_backlog": backlog[:: max(1, len(backlog) // 50)],
        "baseline_insert_per_second": n / baseline,
        "goal_per_second": GOAL,
    }


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--interactions-dsn", default="postgresql://crm:crm@127.0.0.1:55432/crm_interactions")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "interactions_ingest.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "outbox_backlog"}, indent=2))
    e2e, base = figures["end_to_end_per_second"], figures["baseline_insert_per_second"]
    print(
        f"bulk ingestion through the gateway: {e2e:,.0f} contacts/s end to end (stored and in Kafka; goal "
        f"{GOAL:,}: {'MET' if e2e >= GOAL else 'NOT MET'}); plain INSERT baseline {base:,.0f} rows/s, "
        f"ratio {e2e / base:.2f}"
    )


if __name__ == "__main__":
    main()

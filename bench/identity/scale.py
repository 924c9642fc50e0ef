"""Latency of matching one incoming record against a large register (PostgreSQL).

Loads N distinct customers straight into the identity database (the same normalisation,
identifiers, blocking and search keys the service writes, bulk-copied), then times `ingest` of
incoming records — half of them new people, half of them variants of existing customers — and
reports median / p95 / p99 per record, beside a baseline measured in the same run: one indexed
primary-key SELECT plus one INSERT in a transaction, the least any "match and store" can cost.

    python -m bench.identity.scale --customers 1000000 --probes 1000 --database-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg

FIRST = [
    "Ana",
    "Lucía",
    "Carmen",
    "Javier",
    "Pablo",
    "Marta",
    "Diego",
    "Sofía",
    "Olivia",
    "James",
    "Amelia",
    "Harry",
    "Lena",
    "Lukas",
    "Mia",
    "Finn",
    "Léa",
    "Hugo",
    "Chloé",
    "Louis",
    "Elena",
    "Jonas",
    "Emma",
    "Paul",
]
LAST = [
    "García",
    "Fernández",
    "López",
    "Martínez",
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Moreno",
    "Ruiz",
    "Wilson",
    "Evans",
]


SYLLABLES = [
    "ba",
    "ter",
    "lo",
    "mi",
    "sen",
    "ga",
    "ri",
    "do",
    "vel",
    "ko",
    "an",
    "zu",
    "per",
    "el",
    "ma",
    "tin",
    "or",
    "cas",
    "ne",
    "fu",
    "bri",
    "sol",
    "ha",
    "ven",
    "du",
    "ra",
    "qui",
    "mon",
    "ste",
    "ly",
]


def person(i: int, rng: random.Random) -> dict[str, Any]:
    """The i-th customer: a few very common surnames (as in real registers), most of them rarer."""
    mixed = (i * 2654435761) % 2**32  # spread i over the name tables deterministically
    given = FIRST[mixed % len(FIRST)]
    if mixed % 10 < 3:
        family = LAST[(mixed // 10) % len(LAST)]
    else:
        parts = [SYLLABLES[(mixed >> shift) % len(SYLLABLES)] for shift in (5, 11, 17)]
        family = "".join(parts).capitalize()
    suffix = f"{i:07d}"
    return {
        "source_system": "import",
        "source_id": f"scale-{i}",
        "kind": "person",
        "given_name": given,
        "family_name": family,
        "email": f"c{suffix}@example.com",
        "phone": f"+34 6{suffix[-8:].rjust(8, '1')}",
        "birth_date": date(1940 + rng.randint(0, 64), rng.randint(1, 12), rng.randint(1, 28)).isoformat(),
        "addresses": [{"postcode": f"{28000 + i % 900:05d}", "locality": "Madrid", "country": "ES"}],
    }


async def load(dsn: str, customers: int, chunk: int = 20_000) -> float:
    from services.identity.matching import blocking_keys
    from services.identity.normalisation import match_record, normalise_fields, search_keys
    from services.identity.schemas import SourceRecordIn

    rng = random.Random(1)
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        for start in range(0, customers, chunk):
            cust: list[tuple[Any, ...]] = []
            recs: list[tuple[Any, ...]] = []
            idents: list[tuple[Any, ...]] = []
            blocks: list[tuple[Any, ...]] = []
            searches: list[tuple[Any, ...]] = []
            for i in range(start, min(start + chunk, customers)):
                raw = person(i, rng)
                data = SourceRecordIn.model_validate(raw)
                normal = normalise_fields(data)
                cid, rid = str(uuid.uuid4()), str(uuid.uuid4())
                d = normal.display
                cust.append(
                    (
                        cid,
                        "person",
                        "prospect",
                        d.get("given_name"),
                        d.get("family_name"),
                        None,
                        d.get("email"),
                        d.get("phone"),
                        None,
                        "import",
                        date.fromisoformat(raw["birth_date"]),
                        None,
                        None,
                        None,
                        json.dumps(d.get("addresses", [])),
                        "{}",
                        "{}",
                        "{}",
                        None,
                        None,
                        now,
                        now,
                        1,
                    )
                )
                recs.append(
                    (
                        rid,
                        cid,
                        cid,
                        "import",
                        raw["source_id"],
                        "person",
                        json.dumps({**d, "status": "prospect"}),
                        json.dumps(normal.match),
                        30,
                        "[]",
                        now,
                        now,
                        now,
                    )
                )
                idents.extend((kind, value, cid, rid) for kind, value in normal.identifiers)
                blocks.extend((key, rid, cid) for key in blocking_keys(match_record(rid, normal.match)))
                searches.extend((key, rid, cid) for key in search_keys(normal.match))
            await conn.copy_records_to_table(
                "customers",
                records=cust,
                columns=[
                    "id",
                    "kind",
                    "status",
                    "given_name",
                    "family_name",
                    "organisation_name",
                    "email",
                    "phone",
                    "language",
                    "source_system",
                    "birth_date",
                    "gender",
                    "national_id",
                    "branch_id",
                    "addresses",
                    "external_ids",
                    "attributes",
                    "provenance",
                    "merged_into",
                    "erased_at",
                    "created_at",
                    "updated_at",
                    "version",
                ],
            )
            await conn.copy_records_to_table(
                "source_records",
                records=recs,
                columns=[
                    "id",
                    "customer_id",
                    "origin_customer_id",
                    "source_system",
                    "source_id",
                    "kind",
                    "data",
                    "match",
                    "trust",
                    "verified",
                    "observed_at",
                    "received_at",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "identifiers", records=idents, columns=["kind", "value", "customer_id", "source_record_id"]
            )
            await conn.copy_records_to_table(
                "blocking_keys", records=blocks, columns=["key", "source_record_id", "customer_id"]
            )
            await conn.copy_records_to_table(
                "search_keys", records=searches, columns=["key", "source_record_id", "customer_id"]
            )
            print(
                f"loaded {min(start + chunk, customers):,} customers "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        # Right after ~9M COPYed rows autovacuum and checkpoints would run during the probes and
        # distort the tail: settle the database first so the probes measure a steady state.
        print("VACUUM ANALYZE and CHECKPOINT after the load…", flush=True)
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def loaded(dsn: str) -> tuple[int, int]:
    """(customers loaded by `load`, source records written by earlier probe runs) already present."""
    conn = await asyncpg.connect(dsn)
    try:
        customers, total = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE source_id LIKE 'scale-%'), count(*) FROM source_records"
        )
    finally:
        await conn.close()
    return int(customers), int(total - customers)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def probe(url: str, dsn: str, customers: int, probes: int, run: int) -> dict[str, Any]:
    """Time `probes` ingests. `run` (records earlier probe runs left behind) keeps this run's source ids
    and new people distinct from theirs, so a loaded database can be probed again and again."""
    from services.identity import service
    from services.identity.app import build
    from services.identity.schemas import SourceRecordIn
    from services.identity.settings import load_settings
    from shared.messaging.bus import InProcessBus

    # The built-in weights: the loaded register holds no duplicates, and weights fitted on it would
    # learn that nobody ever matches. The latency is what is measured here, not accuracy.
    # Started: the outbox relay publishes each record's events meanwhile, as in production.
    bus = InProcessBus()
    runtime = build(load_settings(database_url=url, auto_train=False), bus)
    await runtime.start()
    await bus.start()
    rng = random.Random(2 + run)  # each run its own draws: new people and variants unlike earlier runs
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    try:
        for n in range(probes):
            if n % 2:
                raw = person(rng.randrange(customers), rng) | {
                    "source_system": "pos",
                    "source_id": f"probe-{run}-{n}",
                }
                raw.pop("email")  # an existing customer seen at a till: same name, phone, birth date
            else:
                raw = person(customers + run + n, rng) | {"source_id": f"probe-{run}-{n}"}
            started = time.perf_counter()
            result = await service.ingest(
                runtime.uow(),
                runtime.settings,  # type: ignore[arg-type]
                runtime.app.state.matcher,
                SourceRecordIn.model_validate(raw),
            )
            latencies.append(time.perf_counter() - started)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    finally:
        await runtime.stop()
        await bus.stop()
    conn = await asyncpg.connect(dsn)
    baseline: list[float] = []
    try:
        await conn.execute("CREATE TEMP TABLE bench_baseline (id text primary key, customer_id text)")
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM customers LIMIT $1", probes)]
        for i, cid in enumerate(ids):
            started = time.perf_counter()
            async with conn.transaction():
                await conn.fetchrow("SELECT * FROM customers WHERE id = $1", cid)
                await conn.execute("INSERT INTO bench_baseline VALUES ($1, $2)", f"b{i}", cid)
            baseline.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return {
        "customers": customers,
        "probes": probes,
        "outcomes": outcomes,
        "ingest_ms": {
            "median": statistics.median(latencies) * 1000,
            "p95": pct(latencies, 0.95),
            "p99": pct(latencies, 0.99),
        },
        "baseline_ms": {
            "median": statistics.median(baseline) * 1000,
            "p95": pct(baseline, 0.95),
            "p99": pct(baseline, 0.99),
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument(
        "--database-url",
        required=True,
        help="postgresql+asyncpg://… of an empty database, or of one loaded before (with --skip-load)",
    )
    parser.add_argument(
        "--skip-load",
        action="store_true",
        help="probe a database an earlier run loaded with --customers customers (only the probes run)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    from services.identity.app import MIGRATIONS
    from shared.migrations import upgrade

    await upgrade(args.database_url, MIGRATIONS)
    dsn = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    present, run = await loaded(dsn)
    if args.skip_load:
        if present != args.customers:
            raise SystemExit(
                f"--skip-load: the database holds {present:,} loaded customers, not {args.customers:,}"
            )
        seconds = None
        print(f"{present:,} customers already loaded; probing only (run {run})", flush=True)
    elif present or run:
        raise SystemExit("the database is not empty: re-run the probes with --skip-load")
    else:
        seconds = await load(dsn, args.customers)
    figures = await probe(args.database_url, dsn, args.customers, args.probes, run)
    figures["load_seconds"] = seconds
    figures["run"] = run
    figures["settled"] = (
        "the load ended with VACUUM ANALYZE and CHECKPOINT (steady state, no autovacuum backlog)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "identity_scale.json").write_text(json.dumps(figures, indent=2))
    ingest, base = figures["ingest_ms"], figures["baseline_ms"]
    print(json.dumps(figures, indent=2))
    print(
        f"one record matched and stored against {args.customers:,} customers: "
        f"median {ingest['median']:.1f} ms, "
        f"p99 {ingest['p99']:.1f} ms (baseline SELECT+INSERT p99 {base['p99']:.2f} ms, "
        f"ratio {ingest['p99'] / base['p99']:.1f}×); {figures['settled']}"
    )


if __name__ == "__main__":
    asyncio.run(main())

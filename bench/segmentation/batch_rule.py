"""One rule segment evaluated in batch, against the equivalent hand-written SQL (PostgreSQL).

Loads `--customers` customers with `--purchases` purchases (the seeded generator of
`bench.segmentation.features`), computes their features, then times, `--repeat` times each,
alternating so caching favours neither:

* compiled: the rule language's SQL for "at least 3 purchases in the last 365 days and a gross spend
  of at least 1,000.00" (`segments.compile.matching`), executed and fetched;
* hand-written: the query an engineer would write for the same question (a join with the windowed
  aggregate), executed and fetched;
* backfill: saving the segment through the service (`POST /segments`: evaluation in the database,
  membership rows, history and `segment_entered` events for every member, one transaction).

Both queries must return the same customers, or the benchmark fails. Target: compiled ≤ 1.5× hand-written.

    python -m bench.segmentation.batch_rule --customers 100000 --purchases 2000000
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
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from bench.identity.databases import fresh_databases
from bench.segmentation.features import load

RULE = {
    "all": [
        {"purchases": {"within_days": 365, "at_least": 3}},
        {"field": "total_spend_minor", "op": ">=", "value": 100_000},
    ]
}
HAND_WRITTEN = """
SELECT f.customer_id
FROM customer_features f
JOIN (
    SELECT customer_id FROM purchase_facts
    WHERE occurred_at >= $1
    GROUP BY customer_id HAVING count(*) >= 3
) recent USING (customer_id)
WHERE NOT f.erased AND f.total_spend_minor >= 100000
"""


async def measure(url: str, customers_n: int, purchases: int, repeat: int) -> dict[str, Any]:
    from services.segmentation import service
    from services.segmentation.app import build
    from services.segmentation.segments import compile as compiler
    from services.segmentation.segments import rules
    from services.segmentation.segments import service as segments
    from services.segmentation.segments.schemas import SegmentIn
    from services.segmentation.settings import load_settings
    from shared.messaging.bus import InProcessBus

    rng = random.Random(11)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    customers = [str(uuid.uuid4()) for _ in range(customers_n)]
    figures: dict[str, Any] = {"customers": customers_n, "purchases": purchases, "rule": RULE}
    try:
        figures["load_seconds"] = round(await load(dsn, customers, purchases, rng), 1)
        await service.recompute(runtime.uow())
        now = datetime.now(UTC)
        statement = compiler.matching(rules.parse(RULE), now=now, dialect="postgresql")
        compiled_sql = str(
            statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
        )
        figures["compiled_sql"] = compiled_sql
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("VACUUM ANALYZE")
            compiled_times: list[float] = []
            hand_times: list[float] = []
            compiled_rows: set[str] = set()
            hand_rows: set[str] = set()
            for _ in range(repeat):
                t0 = time.perf_counter()
                compiled_rows = {r[0] for r in await conn.fetch(compiled_sql)}
                compiled_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hand_rows = {r[0] for r in await conn.fetch(HAND_WRITTEN, now - timedelta(days=365))}
                hand_times.append(time.perf_counter() - t0)
        finally:
            await conn.close()
        if compiled_rows != hand_rows:
            raise SystemExit(f"compiled and hand-written disagree: {len(compiled_rows)} vs {len(hand_rows)}")
        t0 = time.perf_counter()
        created = await segments.create(runtime.uow(), SegmentIn(name="Bench regulars", rule=RULE))
        backfill = time.perf_counter() - t0
    finally:
        await runtime.stop()
    compiled_ms = statistics.median(compiled_times) * 1000
    hand_ms = statistics.median(hand_times) * 1000
    figures.update(
        {
            "members": len(hand_rows),
            "compiled_median_ms": round(compiled_ms, 1),
            "hand_written_median_ms": round(hand_ms, 1),
            "ratio": round(compiled_ms / hand_ms, 3),
            "target_ratio": 1.5,
            "backfill_ms": round(backfill * 1000, 1),
            "backfill_entered": created.entered if hasattr(created, "entered") else None,
            "backfill_ratio_to_hand_written": round(backfill * 1000 / hand_ms, 2),
        }
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    with fresh_databases(args.postgres, 1) as (url,):
        assert url is not None
        figures = asyncio.run(measure(url, args.customers, args.purchases, args.repeat))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segmentation_batch_rule.json").write_text(json.dumps(figures, indent=2))
    printable = {k: v for k, v in figures.items() if k != "compiled_sql"}
    print(json.dumps(printable, indent=2))


if __name__ == "__main__":
    main()

"""Reward redemption through the loyalty API (PostgreSQL): reserve then confirm, as a member app does.

On a fresh database: one program, one voucher reward with stock, `--members` members holding points.
Each redemption is two HTTP requests to the service's ASGI app (no network, the whole FastAPI stack):
`POST /programs/{p}/members/{m}/redemptions` (reserve: rules checked, points held, stock held) and
`POST /redemptions/{id}/confirm` (points spent, voucher issued, `reward_redeemed` + `points_redeemed`
in the outbox), each with an `Idempotency-Key`. Reported: median / p95 / p99 of the pair, beside a
baseline of the same two round trips to an endpoint that does nothing (`GET /health`).

    python -m bench.loyalty.redemption --redemptions 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.identity.databases import fresh_databases


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(pct(values, 0.95), 2),
        "p99_ms": round(pct(values, 0.99), 2),
    }


async def measure(url: str, members: int, redemptions: int) -> dict[str, Any]:
    # The service's own token check is not what is measured (the gateway's is, in bench.e2e): the
    # requests go straight to the app, without a token, as `make bench` runs this (bench/run.sh).
    os.environ.setdefault("CRM_AUTH_ENABLED", "false")
    from services.loyalty.app import build
    from services.loyalty.settings import load_settings
    from shared.messaging.bus import InProcessBus

    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()  # events stay in the outbox: measured is the service, not the bus
    try:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as api:
            created = await api.post("/programs", json={"id": "club", "name": "Club"})
            assert created.status_code == 201, created.text
            reward = await api.post(
                "/programs/club/rewards",
                json={
                    "kind": "voucher",
                    "name": "5 EUR voucher",
                    "cost_points": 100,
                    "stock": redemptions + 10,
                },
            )
            assert reward.status_code == 201, reward.text
            reward_id = reward.json()["id"]
            ids = []
            for _ in range(members):
                enrolled = await api.post("/programs/club/members", json={"customer_id": str(uuid.uuid4())})
                member_id = enrolled.json()["id"]
                granted = await api.post(
                    f"/programs/club/members/{member_id}/adjustments",
                    json={"points": 100 * (redemptions // members + 2), "reason": "bench"},
                )
                assert granted.status_code == 201, granted.text
                ids.append(member_id)
            timings: list[float] = []
            for i in range(redemptions):
                member_id = ids[i % members]
                t0 = time.perf_counter()
                held = await api.post(
                    f"/programs/club/members/{member_id}/redemptions",
                    json={"reward_id": reward_id},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                confirmed = await api.post(
                    f"/redemptions/{held.json()['id']}/confirm",
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                timings.append(time.perf_counter() - t0)
                assert held.status_code == 201, held.text
                assert confirmed.status_code == 200, confirmed.text
            baseline: list[float] = []
            for _ in range(redemptions):
                t0 = time.perf_counter()
                await api.get("/health")
                await api.get("/health")
                baseline.append(time.perf_counter() - t0)
            check = (await api.get("/ledger/check")).json()
    finally:
        await runtime.stop()
    return {
        "redemptions": redemptions,
        "reserve_and_confirm": {**summary(timings), "target_p99_ms": 30},
        "baseline_two_health_requests": summary(baseline),
        "books_ok": check["ok"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--redemptions", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    with fresh_databases(args.postgres, 1) as (url,):
        assert url is not None
        figures = asyncio.run(measure(url, args.members, args.redemptions))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loyalty_redemption.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    if not figures["books_ok"]:
        raise SystemExit("the books do not balance")


if __name__ == "__main__":
    main()

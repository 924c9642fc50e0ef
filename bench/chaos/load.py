"""The client side: customers, the purchases (each with a unique id, from the seed), a steady paced load
through the gateway recording each request's outcome, and the end-of-run retry a real client makes.

Outcomes: `acked` (a 2xx answer: recorded, or already recorded), `failed` (any other answer: the
platform says it did not record it — a 503 while a service is down, say) and `unknown` (no answer:
connection refused or reset, timeout — it may or may not have been recorded).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

SOURCE_SYSTEM = "chaos"
CURRENCY = "EUR"
PURCHASES_PATH = "/api/interactions/purchases"


@dataclass(frozen=True, slots=True)
class Purchase:
    external_id: str
    customer: int  # index into the customer list
    lines: tuple[tuple[str, str, int, int], ...]  # sku, category, quantity, unit price (minor units)
    occurred_at: datetime

    @property
    def total_minor(self) -> int:
        return sum(quantity * price for _, _, quantity, price in self.lines)

    def body(self, customer_ids: list[str]) -> dict[str, Any]:
        return {
            "customer_id": customer_ids[self.customer],
            "external_id": self.external_id,
            "source_system": SOURCE_SYSTEM,
            "channel": "web" if self.customer % 3 == 0 else "store",
            "occurred_at": self.occurred_at.isoformat(),
            "currency": CURRENCY,
            "lines": [
                {"sku": sku, "category": category, "quantity": quantity, "unit_price_minor": price}
                for sku, category, quantity, price in self.lines
            ],
        }


def make_purchases(seed: int, count: int, customers: int, now: datetime) -> list[Purchase]:
    rng = random.Random(f"chaos-purchases-{seed}")
    out: list[Purchase] = []
    for i in range(count):
        lines = tuple(
            (
                f"SKU-{rng.randrange(100):03d}",
                rng.choice(("food", "shoes", "books", "toys")),
                rng.randint(1, 3),
                rng.randrange(50, 20_000),
            )
            for _ in range(rng.randint(1, 3))
        )
        occurred = now - timedelta(days=rng.randrange(60), seconds=rng.randrange(86_400))
        out.append(Purchase(f"chaos-{seed}-{i:06d}", rng.randrange(customers), lines, occurred))
    return out


@dataclass(slots=True)
class Outcome:
    status: str = "pending"  # acked | failed | unknown
    code: int | None = None
    error: str = ""
    attempts: int = 0
    first_status: str = ""  # the outcome during the faults, before any retry
    already_recorded: bool = False  # acknowledged with 200 "already recorded" rather than 201


@dataclass
class LoadStats:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes.values())

    def errors(self) -> Counter[str]:
        return Counter(o.error for o in self.outcomes.values() if o.status != "acked")


async def create_customers(client: httpx.AsyncClient, seed: int, count: int) -> list[str]:
    async def one(i: int) -> str:
        body = {
            "given_name": f"Chaos{i}",
            "family_name": f"Seed{seed}",
            "email": f"chaos{i}.s{seed}@example.com",
        }
        for attempt in range(20):
            try:
                response = await client.post("/api/identity/customers", json=body)
                if response.status_code in (200, 201):
                    return str(response.json()["customer"]["id"])
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"could not create customer {i}")

    semaphore = asyncio.Semaphore(4)

    async def bounded(i: int) -> str:
        async with semaphore:
            return await one(i)

    return list(await asyncio.gather(*(bounded(i) for i in range(count))))


async def post(
    client: httpx.AsyncClient, purchase: Purchase, customer_ids: list[str], outcome: Outcome
) -> None:
    outcome.attempts += 1
    try:
        response = await client.post(PURCHASES_PATH, json=purchase.body(customer_ids))
    except httpx.TimeoutException as exc:
        outcome.status, outcome.code, outcome.error = "unknown", None, f"timeout ({type(exc).__name__})"
        return
    except httpx.HTTPError as exc:
        outcome.status, outcome.code, outcome.error = "unknown", None, f"no answer ({type(exc).__name__})"
        return
    outcome.code = response.status_code
    if 200 <= response.status_code < 300:
        outcome.status, outcome.error = "acked", ""
        outcome.already_recorded = response.status_code == 200
    else:
        outcome.status = "failed"
        try:
            detail = str(response.json().get("detail", ""))[:60]
        except ValueError:
            detail = response.text[:60]
        outcome.error = f"{response.status_code} {detail}".strip()


async def run_load(
    client: httpx.AsyncClient,
    purchases: list[Purchase],
    customer_ids: list[str],
    *,
    rate: float,
    concurrency: int,
    stats: LoadStats,
    on_progress: Callable[[], None] | None = None,
) -> None:
    """Post every purchase once, paced at `rate` per second (at most `concurrency` in flight)."""
    semaphore = asyncio.Semaphore(concurrency)
    stats.started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []

    async def one(purchase: Purchase) -> None:
        outcome = stats.outcomes[purchase.external_id]
        try:
            await post(client, purchase, customer_ids, outcome)
            outcome.first_status = outcome.status
        finally:
            semaphore.release()
            if on_progress is not None:
                on_progress()

    for i, purchase in enumerate(purchases):
        stats.outcomes[purchase.external_id] = Outcome()
        delay = stats.started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await semaphore.acquire()
        tasks.append(asyncio.create_task(one(purchase)))
    await asyncio.gather(*tasks)
    stats.finished = time.monotonic()


async def retry_unacknowledged(
    client: httpx.AsyncClient,
    purchases: list[Purchase],
    customer_ids: list[str],
    stats: LoadStats,
    *,
    timeout: float,
    concurrency: int = 8,
) -> list[str]:
    """Post every purchase without a 2xx again, with the same id, until acknowledged (as a real client
    would). Returns the ids still unacknowledged at the deadline."""
    deadline = time.monotonic() + timeout
    by_id = {p.external_id: p for p in purchases}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(external_id: str) -> None:
        outcome = stats.outcomes[external_id]
        while outcome.status != "acked" and time.monotonic() < deadline:
            async with semaphore:
                await post(client, by_id[external_id], customer_ids, outcome)
            if outcome.status != "acked":
                await asyncio.sleep(1.0)

    pending = [i for i, o in stats.outcomes.items() if o.status != "acked"]
    await asyncio.gather(*(one(i) for i in pending))
    return [i for i in pending if stats.outcomes[i].status != "acked"]

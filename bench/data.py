"""A seeded, realistic CRM data set shared by the benchmarks.

`generate(customers, seed)` returns:

* `records`: identity source records for about `customers` people, written 1–4 times each with the
  errors real systems make (typos, nicknames, moves, shared family e-mails…) — the labelled generator
  of `bench.identity.generator`, so duplicates are there for identity to resolve;
* `purchases`: each person's purchases over `years` years — a few heavy buyers, many occasional
  ones, a share who never buy — with seasonality (December and the summer sales peak, February is
  quiet), weekdays and opening hours, 1–3 lines from a catalogue with skewed popularity;
* `returns`: about 6% of purchases come back partly or wholly within 30 days;
* `complaints`: about 3% of purchases lead to a complaint, more often after a return;
* `surveys`: about 10% of purchases are followed by a survey answer (CSAT and NPS);
* `referrals`: about 5% of people were referred by an earlier customer.

Everything is deterministic under `seed`; people are referred to by their index in `people` (the
first record of each person, in arrival order), so a loader maps them to whatever ids the platform
gives them. `purchase_body` and friends turn an item into the body the API takes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.identity.generator import generate as generate_records

# Relative purchase volume per month (Jan … Dec): sales in January and July, a December peak.
SEASON = [1.1, 0.7, 0.8, 0.9, 1.0, 1.0, 1.2, 0.9, 0.9, 1.0, 1.3, 2.0]
CHANNELS = ["store"] * 6 + ["web"] * 3 + ["app"] * 2 + ["phone"]
CATEGORIES = ["shoes", "clothing", "accessories", "home", "beauty", "sports", "electronics", "toys"]
COMPLAINT_CATEGORIES = ["delivery", "product_quality", "billing", "staff", "returns"]


def _catalogue(rng: random.Random, size: int = 400) -> list[tuple[str, str, int]]:
    items = []
    for i in range(size):
        category = CATEGORIES[i % len(CATEGORIES)]
        price = int(math.exp(rng.uniform(math.log(399), math.log(24_999))))  # 3.99 … 249.99, log-uniform
        items.append((f"SKU-{i + 1000}", category, price - price % 100 + 99))
    return items


@dataclass
class Dataset:
    seed: int
    records: list[dict[str, Any]]  # identity source records, arrival order (duplicates included)
    person_of_record: list[int]  # index in `people` of each record's person
    people: list[int]  # for each person, the index of its first record in `records`
    purchases: list[dict[str, Any]] = field(default_factory=list)  # each with "person"
    returns: list[dict[str, Any]] = field(default_factory=list)  # each with "purchase" (index)
    complaints: list[dict[str, Any]] = field(default_factory=list)  # each with "person", "purchase"
    surveys: list[dict[str, Any]] = field(default_factory=list)  # each with "person"
    referrals: list[tuple[int, int]] = field(default_factory=list)  # (referrer, referred) persons

    def stats(self) -> dict[str, int]:
        return {
            "records": len(self.records),
            "people": len(self.people),
            "duplicate_records": len(self.records) - len(self.people),
            "purchases": len(self.purchases),
            "returns": len(self.returns),
            "complaints": len(self.complaints),
            "surveys": len(self.surveys),
            "referrals": len(self.referrals),
        }


def _when(rng: random.Random, now: datetime, years: float) -> datetime:
    """A purchase time over the last `years` years: seasonal by month, more on Saturdays, in opening hours."""
    while True:
        at = now - timedelta(days=rng.uniform(0.5, 365 * years))
        weight = SEASON[at.month - 1] * (1.4 if at.weekday() == 5 else 0.6 if at.weekday() == 6 else 1.0)
        if rng.random() < weight / 2.8:
            hour = min(21, max(9, int(rng.gauss(15, 3))))
            return at.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)


def generate(customers: int, seed: int = 42, years: float = 3.0, now: datetime | None = None) -> Dataset:
    """A data set of about `customers` people (identity records ≈ 1.4 × that), deterministic under `seed`."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    labelled = generate_records(max(1, int(customers * 1.4)), seed)
    index_of: dict[str, int] = {}
    person_of_record: list[int] = []
    people: list[int] = []
    for i, record in enumerate(labelled.records):
        true_id = labelled.truth[record["source_id"]]
        if true_id not in index_of:
            index_of[true_id] = len(people)
            people.append(i)
        person_of_record.append(index_of[true_id])
    data = Dataset(seed, labelled.records, person_of_record, people)
    catalogue = _catalogue(rng)
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(catalogue))]  # Zipf-ish bestsellers
    for person in range(len(people)):
        profile = rng.random()
        if profile < 0.15:
            count = 0  # registered, never bought
        elif profile < 0.75:
            count = rng.randint(1, 3)
        elif profile < 0.97:
            count = rng.randint(4, 15)
        else:
            count = rng.randint(16, 60)  # the heavy few
        for n in range(count):
            occurred = _when(rng, now, years)
            picked = rng.choices(catalogue, popularity, k=rng.choice([1, 1, 1, 2, 2, 3]))
            lines = [
                {
                    "sku": sku,
                    "category": category,
                    "quantity": rng.choices([1, 2, 3], [8, 3, 1])[0],
                    "unit_price_minor": price,
                }
                for sku, category, price in picked
            ]
            purchase = {
                "person": person,
                "external_id": f"B{seed}-{person}-{n}",
                "source_system": "bench",
                "channel": rng.choice(CHANNELS),
                "occurred_at": occurred,
                "currency": "EUR",
                "lines": lines,
            }
            index = len(data.purchases)
            data.purchases.append(purchase)
            returned = rng.random() < 0.06 and occurred < now - timedelta(days=31)
            if returned:
                data.returns.append(
                    {
                        "purchase": index,
                        "lines": [{"line_no": 1, "quantity": lines[0]["quantity"]}],
                        "reason": rng.choice(["wrong size", "damaged", "changed my mind", "late delivery"]),
                        "occurred_at": occurred + timedelta(days=rng.uniform(1, 30)),
                    }
                )
            if rng.random() < (0.25 if returned else 0.02):
                data.complaints.append(
                    {
                        "person": person,
                        "purchase": index,
                        "channel": rng.choice(["email", "phone", "web"]),
                        "category": rng.choice(COMPLAINT_CATEGORIES),
                        "subject": f"About order {purchase['external_id']}",
                        "opened_at": occurred + timedelta(days=rng.uniform(0.5, 20)),
                    }
                )
            if rng.random() < 0.10:
                data.surveys.append(
                    {
                        "person": person,
                        "channel": "email",
                        "csat": rng.choices([1, 2, 3, 4, 5], [1, 1, 3, 8, 7])[0],
                        "nps": rng.choices(range(11), [1, 1, 1, 1, 1, 2, 3, 5, 8, 8, 6])[0],
                        "answered_at": occurred + timedelta(days=rng.uniform(1, 5)),
                    }
                )
        if person > 10 and rng.random() < 0.05:
            data.referrals.append((rng.randrange(person), person))
    data.purchases.sort(key=lambda p: p["occurred_at"])  # arrival order, as a feed would send them
    return data


def when_text(at: datetime) -> str:
    return min(at, datetime.now(UTC)).isoformat()


def purchase_body(
    purchase: dict[str, Any], customer_id: str, *, external_id: str | None = None
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "external_id": external_id or purchase["external_id"],
        "source_system": purchase["source_system"],
        "channel": purchase["channel"],
        "occurred_at": when_text(purchase["occurred_at"]),
        "currency": purchase["currency"],
        "lines": purchase["lines"],
    }


def complaint_body(complaint: dict[str, Any], customer_id: str, key: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": complaint["channel"],
        "category": complaint["category"],
        "subject": complaint["subject"],
        "opened_at": when_text(complaint["opened_at"]),
        "source_system": "bench",
        "idempotency_key": key,
    }


def survey_body(survey: dict[str, Any], customer_id: str, key: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": survey["channel"],
        "csat": survey["csat"],
        "nps": survey["nps"],
        "answered_at": when_text(survey["answered_at"]),
        "source_system": "bench",
        "idempotency_key": key,
    }


def contact_body(rng: random.Random, customer_id: str, key: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": rng.choice(["web", "app", "phone", "email", "store"]),
        "direction": "inbound",
        "kind": rng.choice(["web_activity", "app_activity", "inquiry", "visit"]),
        "occurred_at": datetime.now(UTC).isoformat(),
        "source_system": "bench",
        "idempotency_key": key,
        "attributes": {"page": f"/p/{rng.randrange(500)}"},
    }

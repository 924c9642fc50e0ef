"""A realistic demo data set, made by a seeded generator and loaded through the public API.

Customers across several countries and languages (some of them recorded twice with small
differences, as real data arrives), and purchases spread over two years with a seasonal rhythm —
more in November–December, fewer in summer — with a few loyal regulars and many one-off buyers.
"""

from __future__ import annotations

import asyncio
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import phonenumbers
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

GIVEN = {
    "es": ["Ana", "Lucía", "Carmen", "Javier", "Pablo", "Marta", "Diego", "Sofía", "Alejandro", "Elena"],
    "en": ["Olivia", "James", "Amelia", "Harry", "Isla", "George", "Emily", "Jack", "Grace", "Thomas"],
    "de": ["Lena", "Lukas", "Mia", "Finn", "Hannah", "Jonas", "Lea", "Paul", "Emma", "Felix"],
    "fr": ["Léa", "Hugo", "Chloé", "Louis", "Manon", "Jules", "Camille", "Arthur", "Inès", "Gabriel"],
}
FAMILY = {
    "es": ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno"],
    "en": ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans", "Walker"],
    "de": [
        "Müller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Schulz",
        "Hoffmann",
    ],
    "fr": [
        "Martin",
        "Bernard",
        "Dubois",
        "Thomas",
        "Robert",
        "Richard",
        "Petit",
        "Durand",
        "Leroy",
        "Moreau",
    ],
}
PHONE_PREFIX = {"es": "+34 6", "en": "+44 7911 ", "de": "+49 151 ", "fr": "+33 6 "}
CATALOGUE = [
    ("SKU-SHOE-01", "shoes", 7999),
    ("SKU-SHOE-02", "shoes", 12999),
    ("SKU-TSHIRT", "apparel", 1999),
    ("SKU-JACKET", "apparel", 14999),
    ("SKU-SOCKS", "accessories", 899),
    ("SKU-BAG", "accessories", 4999),
    ("SKU-WATCH", "accessories", 19999),
    ("SKU-CAP", "accessories", 1499),
]
CHANNELS = ["store", "store", "store", "web", "web", "app", "phone"]
SEASON = [0.9, 0.7, 0.9, 1.0, 1.0, 0.8, 0.6, 0.6, 1.0, 1.1, 1.6, 2.0]  # Jan..Dec


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _phone(rng: random.Random, lang: str) -> str:
    """A random mobile number that `phonenumbers` accepts as valid for the country."""
    digits = {"es": 8, "en": 6, "de": 8, "fr": 8}[lang]
    while True:
        candidate = PHONE_PREFIX[lang] + "".join(str(rng.randint(0, 9)) for _ in range(digits))
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


@dataclass
class DemoCustomer:
    body: dict[str, Any]
    purchases: list[dict[str, Any]] = field(default_factory=list)
    other_records: list[dict[str, Any]] = field(default_factory=list)  # the same person seen elsewhere


def generate(customers: int, seed: int, now: datetime | None = None) -> list[DemoCustomer]:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    out: list[DemoCustomer] = []
    for i in range(customers):
        lang = rng.choice(list(GIVEN))
        given, family = rng.choice(GIVEN[lang]), rng.choice(FAMILY[lang])
        email = f"{_ascii(given)}.{_ascii(family)}{i}@example.{'com' if lang == 'en' else lang}"
        phone = _phone(rng, lang)
        birth = f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        body = {
            "kind": "person",
            "given_name": given,
            "family_name": family,
            "email": email,
            "phone": phone,
            "birth_date": birth,
            "language": lang,
            "source_system": rng.choice(["web", "pos", "callcentre"]),
            "source_id": f"demo-{seed}-{i}",
        }
        customer = DemoCustomer(body)
        if i % 8 == 3:  # seen again at a till: accents dropped, same phone, no e-mail
            customer.other_records.append(
                {
                    "kind": "person",
                    "given_name": _ascii(given).title(),
                    "family_name": _ascii(family).upper(),
                    "phone": phone,
                    "birth_date": birth,
                    "source_system": "pos",
                    "source_id": f"demo-pos-{seed}-{i}",
                }
            )
        profile = rng.random()
        count = 0 if profile < 0.15 else (rng.randint(1, 2) if profile < 0.7 else rng.randint(3, 25))
        for n in range(count):
            for _ in range(20):  # seasonal rejection sampling over the last two years
                when = now - timedelta(days=rng.uniform(1, 730), minutes=rng.randint(0, 600))
                if rng.random() < SEASON[when.month - 1] / 2.0:
                    break
            lines = []
            for line_no in range(rng.choices([1, 2, 3], weights=[6, 3, 1])[0]):
                sku, category, price = CATALOGUE[
                    (i * 7 + n * 3 + line_no * 5 + rng.randint(0, 7)) % len(CATALOGUE)
                ]
                lines.append(
                    {
                        "sku": sku,
                        "category": category,
                        "quantity": rng.randint(1, 3),
                        "unit_price_minor": price,
                    }
                )
            customer.purchases.append(
                {
                    "external_id": f"DEMO-{seed}-{i}-{n}",
                    "source_system": "demo",
                    "channel": rng.choice(CHANNELS),
                    "occurred_at": when.isoformat(),
                    "currency": "EUR",
                    "lines": lines,
                }
            )
        out.append(customer)
    return out


async def load(
    base_url: str,
    customers: int = 200,
    seed: int = 42,
    concurrency: int = 8,
    headers: dict[str, str] | None = None,
) -> dict[str, int]:
    """Post the demo data set through the gateway, with a progress bar. Safe to run twice: purchases
    carry external ids, so a second run records no purchase twice. `headers` authenticate the calls
    (`crm run --demo` passes an in-process service token; `crm demo` a token or an API key)."""
    data = generate(customers, seed)
    total_purchases = sum(len(c.purchases) + len(c.other_records) for c in data)
    counts = {
        "customers": 0,
        "purchases": 0,
        "errors": 0,
        "duplicates matched": 0,
        "duplicates not matched": 0,
    }
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        ) as progress:
            task = progress.add_task("Loading demo data", total=customers + total_purchases)

            async def one(customer: DemoCustomer) -> None:
                async with semaphore:
                    response = await client.post("/api/identity/customers", json=customer.body)
                    progress.advance(task)
                    if response.status_code != 201:
                        counts["errors"] += 1 + len(customer.purchases)
                        progress.advance(task, len(customer.purchases) + len(customer.other_records))
                        return
                    counts["customers"] += 1
                    customer_id = response.json()["customer"]["id"]
                    for record in customer.other_records:
                        r = await client.post("/api/identity/records", json=record)
                        counts[
                            "duplicates matched" if r.status_code == 200 else "duplicates not matched"
                        ] += 1
                        progress.advance(task)
                    for purchase in customer.purchases:
                        r = await client.post(
                            "/api/interactions/purchases", json={**purchase, "customer_id": customer_id}
                        )
                        counts["purchases" if r.status_code in (200, 201) else "errors"] += 1
                        progress.advance(task)

            await asyncio.gather(*(one(c) for c in data))
    return counts

"""The real-time path's statement is built once per segment catalogue with its instants (`now` minus N
days) and customer ids as bind parameters. It must select exactly the customers the literal rule
selects (the batch path's `matching`), for every kind of time-relative rule, at any `now` — on SQLite
and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select

from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.models import CustomerFeatures
from services.segmentation.segments import compile as compiler
from services.segmentation.segments import rules
from services.segmentation.settings import load_settings
from shared.contracts.interactions import InteractionRecorded, PurchaseLine, PurchaseRecorded
from shared.messaging.bus import InProcessBus

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES: list[dict[str, Any]] = [
    {"purchases": {"within_days": 30, "at_least": 2}},
    {"purchases": {"within_days": 90, "at_most": 1}},
    {"spend": {"within_days": 60, "at_least": 5_000, "currency": "EUR"}},
    {"contacts": {"within_days": 14, "at_least": 1}},
    {"field": "days_since_last_purchase", "op": ">=", "value": 20},
    {"field": "days_since_last_purchase", "op": "between", "value": [5, 40]},
    {"field": "days_since_last_contact", "op": "<", "value": 10},
    {"field": "last_purchase_at", "op": "within_last_days", "value": 45},
    {"field": "first_purchase_at", "op": "older_than_days", "value": 100},
    {
        "any": [
            {
                "all": [
                    {"purchases": {"within_days": 365, "at_least": 3}},
                    {"not": {"contacts": {"within_days": 30, "at_least": 1}}},
                ]
            },
            {"field": "days_since_last_purchase", "op": "=", "value": 7},
        ]
    },
]


async def test_parametric_rules_select_what_literal_rules_select(database_pair: tuple[str, str]) -> None:
    runtime = build(load_settings(database_url=database_pair[0]), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    rng = random.Random(5)
    customers = [f"c-{i}" for i in range(40)]
    try:
        for i in range(300):
            customer = rng.choice(customers)
            at = NOW - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 23))
            async with runtime.uow() as uow:
                if rng.random() < 0.7:
                    minor = rng.randint(500, 4_000)
                    await service.on_purchase_recorded(
                        uow,
                        PurchaseRecorded(
                            purchase_id=f"p-{i}",
                            customer_id=customer,
                            channel="web",
                            occurred_at=at,
                            currency="EUR",
                            total_minor=minor,
                            lines=[PurchaseLine(sku="S", quantity=1, unit_price_minor=minor)],
                        ),
                    )
                else:
                    await service.on_interaction_recorded(
                        uow,
                        InteractionRecorded(
                            interaction_id=f"i-{i}",
                            customer_id=customer,
                            kind="inquiry",
                            channel="phone",
                            direction="inbound",
                            occurred_at=at,
                            source_system="callcentre",
                        ),
                    )
                await uow.commit()
        dialect = runtime.engine.dialect.name
        parsed = [rules.parse(r) for r in RULES]
        predicates, cuts = compiler.parametric_predicates(parsed, dialect=dialect)
        statement = select(CustomerFeatures.customer_id, *predicates).where(
            CustomerFeatures.customer_id.in_(bindparam(compiler.RESTRICT_IDS, expanding=True))
        )
        some = sorted(rng.sample(customers, 25))
        checked = 0
        async with runtime.sessions() as session:
            for now in (NOW, NOW + timedelta(days=3, hours=5), NOW + timedelta(days=61)):
                rows = (
                    await session.execute(
                        statement, {compiler.RESTRICT_IDS: some, **compiler.cut_params(cuts, now)}
                    )
                ).all()
                for i, rule in enumerate(parsed):
                    literal = set(
                        await session.scalars(
                            compiler.matching(rule, now=now, dialect=dialect, restrict=some)
                        )
                    )
                    parametric = {row[0] for row in rows if row[1 + i]}
                    assert parametric == literal, (RULES[i], now)
                    checked += bool(literal) and len(literal) < len(some)
    finally:
        await runtime.stop()
    assert checked >= 15  # most rules split the customers (a rule true or false for all proves little)

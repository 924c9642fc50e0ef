"""Events about a customer segmentation has never heard of are kept and count at once, never dropped:
a purchase, a contact, a complaint and a survey arriving before `customer_registered` give the customer
features (and value) straight away; the registration only adds the date; and a customer first seen
under an id that is then merged away ends up counted for the survivor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.models import CustomerFeatures
from services.segmentation.settings import load_settings
from services.segmentation.value.models import CustomerValue
from shared.contracts.identity import CustomerMerged, CustomerRegistered
from shared.contracts.interactions import (
    ComplaintOpened,
    InteractionRecorded,
    PurchaseLine,
    PurchaseRecorded,
    SurveyAnswered,
)
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWork

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    rt = build(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}"), InProcessBus())
    await rt.start()
    await rt.relay.stop()
    yield rt
    await rt.stop()


def bought(purchase_id: str, customer_id: str, days_ago: int, minor: int) -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=purchase_id,
        customer_id=customer_id,
        channel="web",
        occurred_at=NOW - timedelta(days=days_ago),
        currency="EUR",
        total_minor=minor,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=minor)],
    )


async def test_events_before_the_registration_count_at_once(runtime: ServiceRuntime) -> None:
    stranger = "never-registered-yet"

    async def each(handle: Callable[[UnitOfWork], Awaitable[None]]) -> None:
        async with runtime.uow() as uow:
            await handle(uow)
            await uow.commit()

    async def purchase(uow: UnitOfWork) -> None:
        await service.on_purchase_recorded(uow, bought("p-1", stranger, 5, 2500))

    async def contact(uow: UnitOfWork) -> None:
        await service.on_interaction_recorded(
            uow,
            InteractionRecorded(
                interaction_id="i-1",
                customer_id=stranger,
                kind="inquiry",
                channel="phone",
                direction="inbound",
                occurred_at=NOW - timedelta(days=4),
                source_system="callcentre",
            ),
        )

    async def complaint(uow: UnitOfWork) -> None:
        await service.on_complaint_opened(
            uow,
            ComplaintOpened(
                complaint_id="c-1",
                customer_id=stranger,
                channel="email",
                priority="normal",
                category="billing",
                opened_at=NOW - timedelta(days=3),
                first_response_due=NOW,
                resolution_due=NOW + timedelta(days=5),
            ),
        )

    async def survey(uow: UnitOfWork) -> None:
        await service.on_survey_answered(
            uow,
            SurveyAnswered(
                survey_id="s-1",
                customer_id=stranger,
                answered_at=NOW - timedelta(days=2),
                channel="web",
                csat=4,
            ),
        )

    await each(purchase)
    f, spend = await service.features_of(runtime.uow(), stranger)  # known at once, keyed by its id
    assert (f.purchase_count, f.total_spend_minor, f.registered_at) == (1, 2500, None)
    assert [(s.currency, s.total_minor) for s in spend] == [("EUR", 2500)]
    for handle in (contact, complaint, survey, purchase):  # the purchase redelivered: counted once
        await each(handle)
    f, _ = await service.features_of(runtime.uow(), stranger)
    assert (f.purchase_count, f.contact_count, f.open_complaints, f.last_csat) == (1, 1, 1, 4)
    assert sorted(f.channels) == ["phone", "web"]
    async with runtime.sessions() as session:
        value = await session.get(CustomerValue, stranger)
    assert value is not None
    assert value.clv_historic_minor == 2500

    registered_at = NOW - timedelta(days=30)

    async def registration(uow: UnitOfWork) -> None:
        await service.on_customer_registered(
            uow,
            CustomerRegistered(
                customer_id=stranger, kind="person", status="customer", registered_at=registered_at
            ),
        )

    await each(registration)
    f, _ = await service.features_of(runtime.uow(), stranger)
    assert f.registered_at == registered_at
    assert (f.purchase_count, f.contact_count, f.complaint_count, f.last_csat) == (1, 1, 1, 4)
    assert await service.recompute(runtime.uow()) == 1
    again, _ = await service.features_of(runtime.uow(), stranger)
    assert (again.registered_at, again.purchase_count, again.contact_count) == (registered_at, 1, 1)


async def test_a_customer_first_seen_then_merged_away_counts_for_the_survivor(
    runtime: ServiceRuntime,
) -> None:
    events = [
        bought("p-1", "unknown-b", 10, 1000),
        CustomerRegistered(customer_id="a", kind="person", status="customer", registered_at=NOW),
        bought("p-2", "a", 5, 3000),
        CustomerMerged(customer_id="a", merged_id="unknown-b", merge_id="m", method="manual", merged_at=NOW),
        bought("p-3", "unknown-b", 1, 500),  # still under the absorbed id
        CustomerRegistered(  # the absorbed customer's registration, late
            customer_id="unknown-b", kind="person", status="customer", registered_at=NOW - timedelta(days=9)
        ),
    ]
    for event in events:
        async with runtime.uow() as uow:
            if isinstance(event, PurchaseRecorded):
                await service.on_purchase_recorded(uow, event)
            elif isinstance(event, CustomerRegistered):
                await service.on_customer_registered(uow, event)
            else:
                assert isinstance(event, CustomerMerged)
                await service.on_customer_merged(uow, event)
            await uow.commit()
    f, _ = await service.features_of(runtime.uow(), "unknown-b")
    assert f.customer_id == "a"
    assert (f.purchase_count, f.total_spend_minor) == (3, 4500)
    assert f.registered_at == NOW - timedelta(days=9)  # the earliest registration
    async with runtime.sessions() as session:
        assert await session.get(CustomerValue, "a") is not None
        # The late registration did not bring the absorbed id back as a customer of its own.
        assert await session.get(CustomerFeatures, "unknown-b") is None
        assert await session.get(CustomerValue, "unknown-b") is None

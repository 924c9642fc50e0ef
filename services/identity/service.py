"""Identity's use cases. Each runs in one unit of work and commits its state with its events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.identity.models import CustomerRow
from services.identity.repository import CustomerRepository
from services.identity.schemas import CustomerCreate
from shared.contracts.identity import CustomerRegistered
from shared.errors import NotFound
from shared.uow import UnitOfWork


async def register_customer(uow: UnitOfWork, data: CustomerCreate) -> CustomerRow:
    now = datetime.now(UTC)
    row = CustomerRow(
        id=str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
        **data.model_dump(),
    )
    if row.email:
        row.email = row.email.lower()
    async with uow:
        CustomerRepository(uow.session).add(row)
        await uow.session.flush()
        await uow.publish(
            CustomerRegistered(
                customer_id=row.id,
                kind=data.kind,
                status=data.status,
                source_system=data.source_system,
                registered_at=now,
            )
        )
        await uow.commit()
    return row


async def get_customer(uow: UnitOfWork, customer_id: str) -> CustomerRow:
    async with uow:
        row = await CustomerRepository(uow.session).get(customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
    return row

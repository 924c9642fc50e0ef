"""Loyalty's use cases."""

from __future__ import annotations

from datetime import UTC, datetime

from services.loyalty.domain import Posting, base_points
from services.loyalty.repository import ISSUED_ACCOUNT_ID, LedgerRepository, member_account_id
from services.loyalty.schemas import BalanceOut, LedgerLineOut
from shared.contracts.interactions import PurchaseRecorded
from shared.contracts.loyalty import PointsEarned
from shared.errors import NotFound
from shared.uow import UnitOfWork


async def earn_for_purchase(uow: UnitOfWork, purchase: PurchaseRecorded) -> int:
    """Credit the purchase's points, once per purchase id however often the event arrives.

    Runs inside the consumer's transaction (the caller commits)."""
    reference = f"purchase:{purchase.purchase_id}"
    repo = LedgerRepository(uow.session)
    if await repo.transaction_for(reference) is not None:
        return 0
    points = base_points(purchase.total_minor, purchase.currency)
    if points <= 0:
        return 0
    member = member_account_id(purchase.customer_id)
    await repo.ensure_account(member, "member", purchase.customer_id, "points")
    await repo.ensure_account(ISSUED_ACCOUNT_ID, "program", "default", "issued")
    transaction_id = await repo.post(
        kind="earn",
        reference=reference,
        customer_id=purchase.customer_id,
        postings=[Posting(member, points), Posting(ISSUED_ACCOUNT_ID, -points)],
    )
    account = await repo.account(member)
    assert account is not None
    await uow.session.refresh(account)
    await uow.publish(
        PointsEarned(
            customer_id=purchase.customer_id,
            transaction_id=transaction_id,
            points=points,
            reason="purchase",
            reference=purchase.purchase_id,
            balance_after=account.balance,
            occurred_at=datetime.now(UTC),
        )
    )
    return points


async def balance(uow: UnitOfWork, customer_id: str) -> BalanceOut:
    async with uow:
        account = await LedgerRepository(uow.session).account(member_account_id(customer_id))
    if account is None:
        raise NotFound(f"customer {customer_id} has no points account", customer_id=customer_id)
    return BalanceOut(customer_id=customer_id, points=account.balance)


async def history(uow: UnitOfWork, customer_id: str, limit: int) -> list[LedgerLineOut]:
    async with uow:
        rows = await LedgerRepository(uow.session).history(member_account_id(customer_id), limit=limit)
    return [
        LedgerLineOut(
            transaction_id=tx.id,
            kind=tx.kind,
            reference=tx.reference,
            points=amount,
            created_at=tx.created_at,
        )
        for tx, amount in rows
    ]

"""Limits on ordinary member-to-member transfers, from the program's settings:

    "transfer_limits": {"min_points": 100, "max_points_per_transfer": 5000, "max_points_per_month": 20000}

Each limit is optional. The month is the calendar month in the program's time zone, counted from the
sender's `transfer` transactions (household pool transfers and merges are other kinds: they do not
count). The sender's lock (their `available` account row) is taken before counting, so two transfers
at once cannot both squeeze under the monthly limit. A refusal raises before anything is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import ledger
from services.loyalty.domain import LoyaltyRuleRefused
from services.loyalty.models import Account, LedgerEntry, LedgerTransaction, Member, Program


def limits_of(program: Program) -> dict[str, int]:
    raw: Any = (program.settings or {}).get("transfer_limits") or {}
    out: dict[str, int] = {}
    for name in ("min_points", "max_points_per_transfer", "max_points_per_month"):
        value = raw.get(name) if isinstance(raw, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[name] = value
    return out


def month_start(now: datetime, timezone: str) -> datetime:
    """The first instant of `now`'s calendar month in the program's time zone (as UTC)."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


async def transferred_this_month(session: AsyncSession, member: Member, since: datetime) -> int:
    """Points the member sent by ordinary transfers since `since`."""
    sent = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.kind == "transfer",
            LedgerTransaction.member_id == member.id,
            LedgerTransaction.created_at >= since,
            LedgerEntry.account_id == ledger.member_account(member.id),
        )
    )
    return -int(sent or 0)


async def check_limits(
    session: AsyncSession, program: Program, sender: Member, points: int, *, now: datetime | None = None
) -> None:
    """Refuse (LoyaltyRuleRefused) a transfer outside the program's limits; do nothing otherwise."""
    limits = limits_of(program)
    if not limits:
        return
    now = now or datetime.now(UTC)
    minimum = limits.get("min_points")
    if minimum is not None and points < minimum:
        raise LoyaltyRuleRefused(
            "transfer.min_points", f"a transfer moves at least {minimum} points", min_points=minimum
        )
    per_transfer = limits.get("max_points_per_transfer")
    if per_transfer is not None and points > per_transfer:
        raise LoyaltyRuleRefused(
            "transfer.max_per_transfer",
            f"a transfer moves at most {per_transfer} points",
            max_points_per_transfer=per_transfer,
        )
    monthly = limits.get("max_points_per_month")
    if monthly is not None:
        # The sender's lock first: concurrent transfers of one sender are counted one after the other.
        await session.execute(
            select(Account.id).where(Account.id == ledger.member_account(sender.id)).with_for_update()
        )
        since = month_start(now, program.timezone)
        already = await transferred_this_month(session, sender, since)
        if already + points > monthly:
            raise LoyaltyRuleRefused(
                "transfer.monthly_limit",
                f"at most {monthly} points may be transferred per month; {already} already this month",
                max_points_per_month=monthly,
                transferred_this_month=already,
                remaining=max(monthly - already, 0),
            )

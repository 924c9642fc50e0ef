"""What a purchase earns. The base: `points_per_unit` points per whole currency unit of the program's
currency (or of any currency if the program has none), tier-qualifying points equal to the base; then
the program's earning rules (product bonuses, tier and other multipliers, caps), in the order
documented in `services.loyalty.rules.engine`.

`evaluate` is the single entry point used by earning and by the dry run, so both always agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Member, Program


@dataclass(frozen=True, slots=True)
class PurchaseLineFacts:
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class PurchaseFacts:
    """What earning rules may look at: the purchase, its lines, where and when it happened."""

    purchase_id: str
    customer_id: str
    occurred_at: datetime
    currency: str
    total_minor: int
    channel: str
    lines: tuple[PurchaseLineFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class FiredRule:
    rule_id: str
    name: str
    points: int
    detail: str


@dataclass(slots=True)
class Earning:
    points: int
    qualifying: int
    fired: list[FiredRule] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        return {
            "rules": [
                {"rule_id": f.rule_id, "name": f.name, "points": f.points, "detail": f.detail}
                for f in self.fired
            ]
        }


async def evaluate(
    session: AsyncSession, program: Program, member: Member | None, purchase: PurchaseFacts
) -> Earning:
    # Imported here: the rules engine builds on this module's dataclasses.
    from services.loyalty.rules import service as rules

    return await rules.evaluate_purchase(session, program, member, purchase)

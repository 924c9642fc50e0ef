"""Value tiers: a customer pyramid.

Rules:
- Value = predicted CLV (`clv_predicted_minor`), or historic CLV (net spend) when no model is fitted.
- Population: customers with at least one purchase and a value above zero, ranked by value descending
  (`row_number()` in SQL by the scheduled pass).
- With shares (s1, s2, s3) (default 0.01, 0.04, 0.15; `CRM_SEGMENTATION_VALUE_TIER_SHARES`): the top
  tier is the first ceil(s1·n) ranks, high the next up to ceil((s1+s2)·n), medium up to
  ceil((s1+s2+s3)·n), the rest is `rest`. The value at each boundary rank is stored as the tier's floor
  (`rfm_cutpoints`, dimension `tier`); a customer's tier is the highest whose floor their value reaches,
  so ties at a boundary go up and the real-time path places a customer without re-ranking everyone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.segmentation.models import CustomerFeatures as F
from services.segmentation.value.models import CustomerValue

TIERS = ("top", "high", "medium", "rest")


def boundaries(n: int, shares: Sequence[float]) -> list[int]:
    """The 1-based ranks closing the top, high and medium tiers."""
    out: list[int] = []
    cumulative = 0.0
    for share in shares[:3]:
        cumulative += share
        out.append(min(n, max(1, math.ceil(round(cumulative * n, 9)))))
    return out


async def floors(session: AsyncSession, shares: Sequence[float]) -> tuple[list[float], int]:
    value = func.coalesce(CustomerValue.clv_predicted_minor, F.net_spend_minor)
    base = (
        select(value.label("v"), func.row_number().over(order_by=value.desc()).label("rn"))
        .select_from(F)
        .outerjoin(CustomerValue, CustomerValue.customer_id == F.customer_id)
        .where(and_(F.purchase_count > 0, F.erased.is_(False), value > 0))
    )
    sub = base.subquery()
    n = int((await session.execute(select(func.count()).select_from(sub))).scalar_one())
    if n == 0:
        return [], 0
    ranks = boundaries(n, shares)
    rows = dict((await session.execute(select(sub.c.rn, sub.c.v).where(sub.c.rn.in_(ranks)))).all())
    return [float(rows[r]) for r in ranks], n


def tier(value: ColumnElement[Any], floors_: Sequence[float]) -> ColumnElement[Any]:
    if len(floors_) != 3:
        return literal("rest")
    return case(
        (value <= 0, "rest"),
        (value >= floors_[0], "top"),
        (value >= floors_[1], "high"),
        (value >= floors_[2], "medium"),
        else_="rest",
    )

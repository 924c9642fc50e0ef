"""RFM scores.

Rules:
- Inputs from `customer_features`: recency = days since `last_purchase_at` (computed against "now" in
  SQL), frequency = `purchase_count`, monetary = `net_spend_minor`.
- Population: customers with at least one purchase who are not erased.
- Cut points: the quintiles (0.2, 0.4, 0.6, 0.8, linear interpolation = `percentile_cont`) of each
  dimension over that population, computed in SQL by the scheduled pass (`percentile_cont` on
  PostgreSQL; on SQLite the same interpolation from `row_number()` positions) and kept in
  `rfm_cutpoints` as history.
- Scores 1–5, 5 best: recency ≤ c1 → 5, ≤ c2 → 4, ≤ c3 → 3, ≤ c4 → 2, else 1 (recent is good);
  frequency and monetary ≤ c1 → 1, ≤ c2 → 2, ≤ c3 → 3, ≤ c4 → 4, else 5. No purchase: no scores.
- Segment (R × F grid): champions R≥4 F≥4; loyal R≥3 F≥3; new R≥4 F=1; promising R≥4 F=2;
  needs_attention R=3 F≤2; at_risk R≤2 F≥3; hibernating R≤2 F≤2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, null, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.segmentation.models import CustomerFeatures as F
from services.segmentation.value.sqltime import Moment, at, days_between

QUINTILES = (0.2, 0.4, 0.6, 0.8)
DIMENSIONS = ("recency", "frequency", "monetary")


def dimension(name: str, now: Moment, dialect: str) -> Any:
    if name == "recency":
        return days_between(at(now), F.last_purchase_at, dialect)
    if name == "frequency":
        return F.purchase_count
    return F.net_spend_minor


def population() -> ColumnElement[bool]:
    return and_(F.purchase_count > 0, F.erased.is_(False))


def interpolate(sorted_at: dict[int, float], n: int, p: float) -> float:
    """percentile_cont: position h = p·(n−1) (0-based), linear between its neighbours."""
    h = p * (n - 1)
    lo = math.floor(h)
    low = sorted_at[lo + 1]
    high = sorted_at.get(lo + 2, low)
    return float(low + (h - lo) * (high - low))


async def quantiles(
    session: AsyncSession, expr: ColumnElement[Any], where: ColumnElement[bool], probs: Sequence[float]
) -> tuple[list[float], int]:
    """The `probs` quantiles of `expr` over the rows of `customer_features` matching `where`, in SQL."""
    dialect = session.get_bind().dialect.name
    n = int((await session.execute(select(func.count()).select_from(F).where(where))).scalar_one())
    if n == 0:
        return [], 0
    if dialect == "postgresql":
        array = postgresql.array([literal(p) for p in probs])
        stmt = select(func.percentile_cont(array).within_group(expr.asc())).where(where)
        values = (await session.execute(stmt)).scalar_one()
        return [float(v) for v in values], n
    positions = set()
    for p in probs:
        lo = math.floor(p * (n - 1))
        positions.update({lo + 1, min(lo + 2, n)})
    ranked = select(expr.label("x"), func.row_number().over(order_by=expr.asc()).label("rn")).where(where)
    sub = ranked.subquery()
    rows = await session.execute(select(sub.c.rn, sub.c.x).where(sub.c.rn.in_(sorted(positions))))
    sorted_at = {int(rn): float(x) for rn, x in rows}
    return [interpolate(sorted_at, n, p) for p in probs], n


async def cut_points(session: AsyncSession, now: datetime) -> tuple[dict[str, list[float]], int]:
    dialect = session.get_bind().dialect.name
    out: dict[str, list[float]] = {}
    n = 0
    for name in DIMENSIONS:
        out[name], n = await quantiles(session, dimension(name, now, dialect), population(), QUINTILES)
    return out, n


def score(name: str, value: ColumnElement[Any], cuts: Sequence[float]) -> ColumnElement[Any]:
    """The 1–5 score of `value` against the 4 cut points (NULL without cut points or purchases)."""
    if len(cuts) != 4:
        return cast(null(), Integer)  # typed: PostgreSQL cannot infer a bare NULL parameter
    if name == "recency":
        ladder = [(value <= c, 5 - i) for i, c in enumerate(cuts)]
        expr = case(*ladder, else_=1)
    else:
        expr = case(*[(value <= c, i + 1) for i, c in enumerate(cuts)], else_=5)
    return case((F.purchase_count > 0, expr), else_=None)


def segment(r: ColumnElement[Any], f: ColumnElement[Any]) -> ColumnElement[Any]:
    return case(
        (r.is_(None), None),
        (and_(r >= 4, f >= 4), "champions"),
        (and_(r >= 3, f >= 3), "loyal"),
        (and_(r >= 4, f == 1), "new"),
        (r >= 4, "promising"),
        (r == 3, "needs_attention"),
        (f >= 3, "at_risk"),
        else_="hibernating",
    )

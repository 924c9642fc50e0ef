"""Value, risk and stage use cases.

`score_customers` (real-time, after an event changed some customers' features) and
`recompute_population` (the scheduled pass) end in the same set-based statement (`_apply`): one
INSERT … SELECT for missing rows, one SELECT of the rows whose stage changes or that cross into high
risk (only those reach Python, to be recorded and published), one UPDATE … FROM over the new values.
The population pass first recomputes, in SQL, the RFM cut points (quantiles) and the tier floors
(ranks), and fits the CLV model in a thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.segmentation.models import CustomerFeatures as F
from services.segmentation.value import clv, ladder, rfm, risk, tiers
from services.segmentation.value.config import ValueSettings, load_value_settings
from services.segmentation.value.models import (
    ClvModel,
    CustomerValue,
    Defection,
    LadderHistory,
    RfmCutpoints,
)
from services.segmentation.value.sqltime import at, days_between
from shared.contracts.segmentation_value import CustomerAtRisk, LadderStageChanged, RiskReason
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)
CV: Table = CustomerValue.__table__  # type: ignore[assignment]
VALUABLE = ("top", "high")


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def current_cut_points(session: AsyncSession) -> dict[str, list[float]]:
    latest = (
        select(RfmCutpoints.dimension, func.max(RfmCutpoints.computed_at).label("at"))
        .group_by(RfmCutpoints.dimension)
        .subquery()
    )
    rows = await session.execute(
        select(RfmCutpoints.dimension, RfmCutpoints.cut_points).join(
            latest,
            and_(latest.c.dimension == RfmCutpoints.dimension, latest.c.at == RfmCutpoints.computed_at),
        )
    )
    return {dimension: list(cuts) for dimension, cuts in rows}


async def current_model(session: AsyncSession) -> ClvModel | None:
    return (await session.scalars(select(ClvModel).order_by(ClvModel.fitted_at.desc()).limit(1))).first()


async def _rfmt(
    session: AsyncSession, now: datetime, ids: Sequence[str] | None
) -> tuple[list[str], clv.Rfmt]:
    dialect = _dialect(session)
    stmt = select(
        F.customer_id,
        F.purchase_count - 1,
        days_between(F.last_purchase_at, F.first_purchase_at, dialect),
        days_between(at(now), F.first_purchase_at, dialect),
        F.net_spend_minor / F.purchase_count,
    ).where(rfm.population())
    if ids is not None:
        stmt = stmt.where(F.customer_id.in_(list(ids)))
    rows = (await session.execute(stmt)).all()
    matrix = np.array([r[1:] for r in rows], dtype=float).reshape(-1, 4)
    matrix = np.nan_to_num(matrix)
    data = clv.Rfmt(
        frequency=matrix[:, 0],
        recency=np.maximum(matrix[:, 1], 0.0),
        T=np.maximum(matrix[:, 2], np.maximum(matrix[:, 1], 0.0)),
        monetary=np.maximum(matrix[:, 3], 0.0) / 100.0,
    )
    return [r[0] for r in rows], data


async def _write_predictions(
    session: AsyncSession,
    params: dict[str, Any] | None,
    ids: list[str],
    data: clv.Rfmt,
    settings: ValueSettings,
) -> None:
    if not ids:
        return
    if params is None:
        values: list[int | None] = [None] * len(ids)
    else:
        predicted = clv.predict(
            params, data, months=settings.clv_horizon_months, monthly_discount=settings.clv_monthly_discount
        )
        values = [round(float(v) * 100) for v in predicted]
    stmt = update(CV).where(CV.c.customer_id == bindparam("cid")).values(clv_predicted_minor=bindparam("clv"))
    rows = [{"cid": cid, "clv": v} for cid, v in zip(ids, values, strict=True)]
    for start in range(0, len(rows), 5_000):
        await session.execute(stmt, rows[start : start + 5_000])


async def _ensure_rows(session: AsyncSession, now: datetime, ids: Sequence[str] | None) -> None:
    """A `customer_value` row for every known, non-erased customer; erased customers' rows go, and so
    does the value row of an id without features (a customer merged into another: its history stays,
    for an unmerge)."""
    erased = select(F.customer_id).where(F.erased.is_(True))
    if ids is not None:
        erased = erased.where(F.customer_id.in_(list(ids)))
    for table in (CustomerValue, LadderHistory, Defection):
        await session.execute(delete(table).where(table.customer_id.in_(erased)))
    gone = delete(CustomerValue).where(~exists().where(F.customer_id == CustomerValue.customer_id))
    if ids is not None:
        gone = gone.where(CustomerValue.customer_id.in_(list(ids)))
    await session.execute(gone)
    missing = select(
        F.customer_id,
        literal(0),
        literal("rest"),
        literal(0),
        literal("low"),
        literal({}, JSON()),
        literal(False),
        literal(False),
        literal("prospect"),
        at(now),
    ).where(F.erased.is_(False), ~exists().where(CustomerValue.customer_id == F.customer_id))
    if ids is not None:
        missing = missing.where(F.customer_id.in_(list(ids)))
    await session.execute(
        insert(CV).from_select(
            [
                "customer_id",
                "clv_historic_minor",
                "value_tier",
                "risk_score",
                "risk_level",
                "risk_reasons",
                "active",
                "lapsed",
                "ladder_stage",
                "updated_at",
            ],
            missing,
        )
    )


async def _apply(
    session: AsyncSession, uow: UnitOfWork, now: datetime, ids: Sequence[str] | None, settings: ValueSettings
) -> dict[str, int]:
    dialect = _dialect(session)
    id_list = list(ids) if ids is not None else None
    cuts = await current_cut_points(session)
    old = aliased(CustomerValue, name="old")
    win = risk.windows(now, settings, id_list)
    r = rfm.score("recency", rfm.dimension("recency", now, dialect), cuts.get("recency", []))
    f = rfm.score("frequency", rfm.dimension("frequency", now, dialect), cuts.get("frequency", []))
    m = rfm.score("monetary", rfm.dimension("monetary", now, dialect), cuts.get("monetary", []))
    value = func.coalesce(old.clv_predicted_minor, F.net_spend_minor)
    tier = tiers.tier(value, cuts.get("tier", []))
    points = risk.components(win, now, dialect, settings)
    score = risk.total(points)
    is_active = risk.active(now, dialect, settings)
    new_stmt = (
        select(
            F.customer_id.label("customer_id"),
            r.label("rfm_r"),
            f.label("rfm_f"),
            m.label("rfm_m"),
            rfm.segment(r, f).label("rfm_segment"),
            F.currency.label("currency"),
            F.net_spend_minor.label("clv_historic_minor"),
            tier.label("value_tier"),
            score.label("risk_score"),
            risk.level(score, settings).label("risk_level"),
            risk.reasons_json(points, dialect).label("risk_reasons"),
            is_active.label("active"),
            and_(F.purchase_count > 0, ~is_active).label("lapsed"),
            ladder.stage(tier, now, dialect, settings).label("ladder_stage"),
            old.ladder_stage.label("old_stage"),
            old.risk_level.label("old_level"),
        )
        .select_from(F)
        .join(old, old.customer_id == F.customer_id)
        .outerjoin(win, win.c.customer_id == F.customer_id)
        .where(F.erased.is_(False))
    )
    if id_list is not None:
        new_stmt = new_stmt.where(F.customer_id.in_(id_list))
    new = new_stmt.subquery("new")
    changes = (
        await session.execute(
            select(
                new.c.customer_id,
                new.c.old_stage,
                new.c.ladder_stage,
                new.c.old_level,
                new.c.risk_level,
                new.c.risk_score,
                new.c.risk_reasons,
                new.c.value_tier,
            ).where(
                or_(
                    new.c.old_stage != new.c.ladder_stage,
                    and_(
                        new.c.risk_level == "high",
                        new.c.old_level != "high",
                        new.c.value_tier.in_(VALUABLE),
                    ),
                )
            )
        )
    ).all()
    columns = [
        "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "currency", "clv_historic_minor", "value_tier",
        "risk_score", "risk_level", "risk_reasons", "active", "lapsed", "ladder_stage",
    ]  # fmt: skip
    values: dict[str, Any] = {c: new.c[c] for c in columns}
    # A customer who buys again is active: the defection reason no longer applies (history stays).
    values["defection_reason"] = case((new.c.active.is_(True), None), else_=CV.c.defection_reason)
    values["updated_at"] = at(now)
    await session.execute(update(CV).where(CV.c.customer_id == new.c.customer_id).values(**values))

    history: list[dict[str, Any]] = []
    events: list[Any] = []
    at_risk = 0
    for customer_id, old_stage, stage, old_level, level, score_, reasons, tier_ in changes:
        if old_stage != stage:
            why = ladder.reason(old_stage, stage)
            history.append(
                {
                    "customer_id": customer_id,
                    "from_stage": old_stage,
                    "to_stage": stage,
                    "at": now,
                    "reason": why,
                }
            )
            events.append(
                LadderStageChanged(
                    customer_id=customer_id, from_stage=old_stage, to_stage=stage, reason=why, at=now
                )
            )
        if level == "high" and old_level != "high" and tier_ in VALUABLE:
            parsed = parse_reasons(reasons)
            events.append(
                CustomerAtRisk(
                    customer_id=customer_id,
                    risk_score=int(score_),
                    previous_level=old_level,
                    value_tier=tier_,
                    reasons=[RiskReason(component=k, points=v) for k, v in risk.reasons_list(parsed)],
                    at=now,
                )
            )
            at_risk += 1
    if history:
        await session.execute(insert(LadderHistory), history)
    await uow.publish_many(events)
    return {"ladder_changes": len(history), "at_risk_published": at_risk}


async def risk_explanations(
    session: AsyncSession, customer_id: str, *, now: datetime | None = None
) -> list[tuple[str, int, str]]:
    """Why the customer's stored risk score is what it is: (component, points, sentence), largest
    first, the trend components with their figures ("satisfaction fell from 9.0 to 4.0"). Empty for a
    customer without a value row."""
    row = await session.get(CustomerValue, customer_id)
    features = await session.get(F, customer_id)
    if row is None or features is None:
        return []
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    win = risk.windows(now, settings, [customer_id])
    counts = (
        await session.execute(select(win.c.recent_n, win.c.prior_n, win.c.recent_m, win.c.prior_m))
    ).first()
    recent_n, prior_n, recent_m, prior_m = (int(v or 0) for v in (counts or (0, 0, 0, 0)))
    trends = risk.Trends(
        window_days=settings.trend_window_days,
        recent_purchases=recent_n,
        prior_purchases=prior_n,
        recent_spend_minor=recent_m,
        prior_spend_minor=prior_m,
        currency=features.currency,
        satisfaction_before=features.satisfaction_before,
        satisfaction_latest=features.satisfaction_latest,
    )
    return risk.explain(parse_reasons(row.risk_reasons), trends)


def parse_reasons(raw: Any) -> dict[str, int]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {str(k): int(v) for k, v in (raw or {}).items()}


async def score_customers(
    session: AsyncSession, uow: UnitOfWork, customer_ids: Sequence[str], *, now: datetime | None = None
) -> dict[str, int]:
    """Real-time path: recompute these customers' value, risk and stage from their features, the
    current cut points, tier floors and CLV model; record and publish the transitions. Runs inside the
    caller's transaction (it does not commit)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {"ladder_changes": 0, "at_risk_published": 0}
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    await _ensure_rows(session, now, ids)
    model = await current_model(session)
    found, data = await _rfmt(session, now, ids)
    await _write_predictions(session, model.params if model else None, found, data, settings)
    return await _apply(session, uow, now, ids, settings)


async def recompute_population(
    session: AsyncSession, uow: UnitOfWork, *, now: datetime | None = None
) -> dict[str, Any]:
    """Scheduled pass: RFM cut points (quantiles in SQL), CLV fit (in a thread) and predictions, tier
    floors (ranks in SQL), then the set-based update of everyone. Does not commit."""
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    await _ensure_rows(session, now, None)
    cuts, population = await rfm.cut_points(session, now)
    for dimension, points in cuts.items():
        if points:
            session.add(
                RfmCutpoints(dimension=dimension, computed_at=now, cut_points=points, population=population)
            )
    ids, data = await _rfmt(session, now, None)
    params = await asyncio.to_thread(
        clv.fit, data, min_repeat=settings.clv_min_repeat_customers, sample=settings.clv_fit_sample
    )
    if params is not None:
        session.add(ClvModel(fitted_at=now, params=params, customers=len(ids)))
    else:
        model = await current_model(session)
        params = model.params if model else None
    await _write_predictions(session, params, ids, data, settings)
    floors, ranked = await tiers.floors(session, settings.tier_shares)
    if floors:
        session.add(RfmCutpoints(dimension="tier", computed_at=now, cut_points=floors, population=ranked))
    await session.flush()
    changes = await _apply(session, uow, now, None, settings)
    log.info("value_recomputed", customers=population, fitted=params is not None, **changes)
    return {
        "computed_at": now,
        "customers_with_purchases": population,
        "cut_points": cuts,
        "tier_floors_minor": floors,
        "clv_model": params,
        **changes,
    }


async def scheduled(uow_factory: Callable[[], UnitOfWork], interval_seconds: float | None = None) -> None:
    """The scheduled pass, forever (wire with `runtime.add_background(lambda: scheduled(runtime.uow))`)."""
    interval = interval_seconds or load_value_settings().recompute_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            async with uow_factory() as uow:
                await recompute_population(uow.session, uow)
                await uow.commit()
        except Exception:
            log.exception("value_recompute_failed")

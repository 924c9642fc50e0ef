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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import column as sa_column
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

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
from services.segmentation.value.sqltime import NOW, Moment, at, days_between
from shared.contracts.segmentation_value import CustomerAtRisk, LadderStageChanged, RiskReason
from shared.db import CreateTempTableAs, padded
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


def _rfmt_columns(now: Moment, dialect: str) -> list[Any]:
    """The BG/NBD inputs of a customer of the population (purchases > 0), as SQL: frequency, recency,
    T, average order (NULL outside the population)."""
    return [
        F.purchase_count - 1,
        days_between(F.last_purchase_at, F.first_purchase_at, dialect),
        days_between(at(now), F.first_purchase_at, dialect),
        case((F.purchase_count > 0, F.net_spend_minor / F.purchase_count), else_=None),
    ]


def _rfmt_data(rows: Sequence[Sequence[Any]]) -> clv.Rfmt:
    return _rfmt_matrix(np.array([list(r) for r in rows], dtype=float).reshape(-1, 4))


def _rfmt_matrix(matrix: np.ndarray[Any, Any]) -> clv.Rfmt:
    matrix = np.nan_to_num(matrix)
    return clv.Rfmt(
        frequency=matrix[:, 0],
        recency=np.maximum(matrix[:, 1], 0.0),
        T=np.maximum(matrix[:, 2], np.maximum(matrix[:, 1], 0.0)),
        monetary=np.maximum(matrix[:, 3], 0.0) / 100.0,
    )


async def _rfmt(
    session: AsyncSession, now: datetime, ids: Sequence[str] | None
) -> tuple[list[str], clv.Rfmt]:
    dialect = _dialect(session)
    columns = _rfmt_columns(now, dialect)
    if ids is None and dialect == "postgresql":
        # Everyone: one row of five arrays (decoded by the driver in C) instead of a million rows
        # through the ORM result (5.3 -> 2.8 s at 1,000,000 customers). The aggregates of one query
        # see the rows in the same order.
        arrays = select(func.array_agg(F.customer_id), *(func.array_agg(c) for c in columns))
        row = (await session.execute(arrays.where(rfm.population()))).one()
        if row[0] is None:
            return [], _rfmt_data([])
        matrix = np.array(row[1:], dtype=float).T
        return list(row[0]), _rfmt_matrix(matrix)
    stmt = select(F.customer_id, *columns).where(rfm.population())
    if ids is not None:
        stmt = stmt.where(F.customer_id.in_(list(ids)))
    rows = (await session.execute(stmt)).all()
    return [r[0] for r in rows], _rfmt_data([r[1:] for r in rows])


def _predicted(params: dict[str, Any] | None, data: clv.Rfmt, settings: ValueSettings) -> list[int | None]:
    """Predicted CLV in minor units (None for everyone without a fitted model)."""
    if params is None:
        return [None] * len(data.frequency)
    predicted = clv.predict(
        params, data, months=settings.clv_horizon_months, monthly_discount=settings.clv_monthly_discount
    )
    return [round(float(v) * 100) for v in predicted]


async def _write_predictions(
    session: AsyncSession,
    params: dict[str, Any] | None,
    ids: list[str],
    data: clv.Rfmt,
    settings: ValueSettings,
) -> Table | None:
    """The predicted CLV of `ids`, written — or, many on PostgreSQL, loaded into `clv_load` for the
    pass's UPDATE to write with the rest of each row (returned: `_apply(…, predictions=)`), so a row
    whose prediction moved (most of them, every day: T grows) is written once, not twice."""
    if not ids:
        return None
    values = _predicted(params, data, settings)
    if len(ids) > WRITE_BATCH and _dialect(session) == "postgresql":
        await _copy_predictions(session, ids, values)
        return _CLV_LOAD
    stmt = update(CV).where(CV.c.customer_id == bindparam("cid")).values(clv_predicted_minor=bindparam("clv"))
    rows = [{"cid": cid, "clv": v} for cid, v in zip(ids, values, strict=True)]
    for start in range(0, len(rows), WRITE_BATCH):
        await session.execute(stmt, rows[start : start + WRITE_BATCH])
    return None


WRITE_BATCH = 5_000


_CLV_LOAD = Table("clv_load", MetaData(), Column("customer_id", String), Column("clv", BigInteger))


async def _copy_predictions(session: AsyncSession, ids: list[str], values: list[int | None]) -> None:
    """Many predictions at once on PostgreSQL: COPY into a temporary table (`clv_load`, emptied at
    commit), which the pass's UPDATE joins."""
    connection = await session.connection()
    await connection.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS clv_load (customer_id varchar(36) PRIMARY KEY, clv bigint) "
        "ON COMMIT DELETE ROWS"
    )
    await connection.exec_driver_sql("TRUNCATE clv_load")
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    for start in range(0, len(ids), 200_000):
        chunk = list(zip(ids[start : start + 200_000], values[start : start + 200_000], strict=True))
        await raw.copy_records_to_table("clv_load", records=chunk, columns=["customer_id", "clv"])
    await connection.exec_driver_sql("ANALYZE clv_load")


async def _ensure_rows(session: AsyncSession, now: datetime, ids: Sequence[str] | None) -> None:
    """A `customer_value` row for every known, non-erased customer; erased customers' rows go, and so
    does the value row of an id without features (a customer merged into another: its history stays,
    for an unmerge)."""
    erased = select(F.customer_id).where(F.erased.is_(True))
    if ids is not None:
        erased = erased.where(F.customer_id.in_(list(ids)))
    for table in (CustomerValue, LadderHistory, Defection):
        await session.execute(delete(table).where(table.customer_id.in_(erased)))
    # Everyone on PostgreSQL: the anti-joins below as hash joins, never nested loops (planned against
    # a customer_value analysed empty, a nested loop re-scans it per customer: quadratic).
    everyone_pg = ids is None and _dialect(session) == "postgresql"
    if everyone_pg:
        await session.execute(text("SET LOCAL enable_nestloop = off"))
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
    ).where(F.erased.is_(False))
    if ids is not None:
        missing = missing.where(F.customer_id.in_(list(ids)))
    elif everyone_pg:  # only the missing rows reach the insert (a hash anti-join, nested loops off)
        missing = missing.where(~exists().where(CV.c.customer_id == F.customer_id))
    # Rows already there are skipped by the primary key too (ON CONFLICT DO NOTHING). At 1,000,000
    # customers an anti-join planned as a nested loop re-scanned customer_value (analysed empty) and
    # the rows the statement itself was adding, for every customer — quadratic; 20 minutes of CPU.
    add = (postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert)(CV)
    await session.execute(
        add.from_select(
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
        ).on_conflict_do_nothing(index_elements=["customer_id"])
    )
    if everyone_pg:
        await session.execute(text("RESET enable_nestloop"))


COLUMNS = [
    "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "currency", "clv_historic_minor", "value_tier",
    "risk_score", "risk_level", "risk_reasons", "active", "lapsed", "ladder_stage",
]  # fmt: skip


def _new_values(
    now: Moment,
    settings: ValueSettings,
    dialect: str,
    cuts: dict[str, list[float]],
    ids: Sequence[str] | BindParameter[Any] | None,
    predicted: dict[str, int | None] | ColumnElement[Any] | None = None,
    predictions: Table | None = None,
) -> Any:
    """The one SELECT of everyone's (or `ids`') new value, risk and stage, beside their old stage and
    level: what both the scheduled pass and the real-time path write. With `predicted` (the real-time
    path), the customers' new predicted CLV (a customer of the population missing from it keeps none,
    anyone else keeps their stored one) is a column too, and the tier uses it. With `predictions` (a
    table of customer_id, clv: the pass over everyone), a customer in it gets its `clv`, anyone else
    keeps their stored one.

    `now`, `ids` and `predicted` may be bound parameters (`NOW`, `IDS`, `PREDICTED`: one customer's
    prediction): the statement is then a template (see `_one_customer_update`)."""
    old = aliased(CustomerValue, name="old")
    win = risk.windows(now, settings, ids)
    r = rfm.score("recency", rfm.dimension("recency", now, dialect), cuts.get("recency", []))
    f = rfm.score("frequency", rfm.dimension("frequency", now, dialect), cuts.get("frequency", []))
    m = rfm.score("monetary", rfm.dimension("monetary", now, dialect), cuts.get("monetary", []))
    clv_now: Any = old.clv_predicted_minor
    if isinstance(predicted, ColumnElement):
        clv_now = case((rfm.population(), predicted), else_=old.clv_predicted_minor)
    elif predicted is not None:
        known = [(F.customer_id == cid, literal(v, BigInteger())) for cid, v in predicted.items()]
        fresh = case(*known, else_=null()) if known else cast(null(), BigInteger())
        clv_now = case((rfm.population(), fresh), else_=old.clv_predicted_minor)
    elif predictions is not None:
        clv_now = case(
            (predictions.c.customer_id.is_not(None), predictions.c.clv), else_=old.clv_predicted_minor
        )
    value = func.coalesce(clv_now, F.net_spend_minor)
    points = risk.components(win, now, dialect, settings)
    # Two steps. `scored`: every costly expression once per customer (the RFM scores, the tier, each
    # risk component's points, active) beside the features row. Then `new` combines them (segment,
    # total, level, reasons, stage) by reference: written as one expression tree, each of those was
    # repeated where it was used (a component's points five times: twice in the capped total, twice
    # more in the level, once in the reasons) and PostgreSQL evaluated every copy. `OFFSET 0` keeps
    # PostgreSQL from flattening `scored` back into `new`.
    inner = [
        *F.__table__.c,
        r.label("rfm_r"),
        f.label("rfm_f"),
        m.label("rfm_m"),
        tiers.tier(value, cuts.get("tier", [])).label("value_tier"),
        *(pts.label(f"points_{name}") for name, pts in points.items()),
        risk.active(now, dialect, settings).label("active"),
        old.ladder_stage.label("old_stage"),
        old.risk_level.label("old_level"),
    ]
    if predicted is not None or predictions is not None:
        inner.append(clv_now.label("clv_predicted_minor"))
    scored_stmt = (
        select(*inner)
        .select_from(F)
        .join(old, old.customer_id == F.customer_id)
        .outerjoin(win, win.c.customer_id == F.customer_id)
        .where(F.erased.is_(False))
    )
    if predictions is not None:
        scored_stmt = scored_stmt.outerjoin(predictions, predictions.c.customer_id == F.customer_id)
    if ids is not None:
        scored_stmt = scored_stmt.where(F.customer_id.in_(ids))
    if dialect == "postgresql":
        scored_stmt = scored_stmt.offset(0)
    scored = scored_stmt.subquery("scored")
    adapt = ClauseAdapter(scored).traverse  # features columns -> the same columns of `scored`
    parts: dict[str, ColumnElement[Any]] = {name: scored.c[f"points_{name}"] for name in points}
    score = risk.total(parts)
    columns = [
        scored.c.customer_id.label("customer_id"),
        scored.c.rfm_r,
        scored.c.rfm_f,
        scored.c.rfm_m,
        rfm.segment(scored.c.rfm_r, scored.c.rfm_f).label("rfm_segment"),
        scored.c.currency.label("currency"),
        scored.c.net_spend_minor.label("clv_historic_minor"),
        scored.c.value_tier,
        score.label("risk_score"),
        risk.level(score, settings).label("risk_level"),
        risk.reasons_json(parts, dialect).label("risk_reasons"),
        scored.c.active,
        and_(scored.c.purchase_count > 0, ~scored.c.active).label("lapsed"),
        adapt(ladder.stage(scored.c.value_tier, now, dialect, settings)).label("ladder_stage"),
        scored.c.old_stage,
        scored.c.old_level,
    ]
    if predicted is not None or predictions is not None:
        columns.append(scored.c.clv_predicted_minor)
    return select(*columns).subquery("new")


def _changed(new: Any, *, with_clv: bool = False) -> ColumnElement[bool]:
    """PostgreSQL: the stored row differs from `new` in a written column (`updated_at` aside)."""
    # The reasons as text: both sides are `json_build_object` output, key order fixed (no jsonb parse).
    written = [*COLUMNS, "clv_predicted_minor"] if with_clv else COLUMNS
    stored = [CV.c[c] if c != "risk_reasons" else cast(CV.c[c], Text) for c in written]
    fresh = [new.c[c] if c != "risk_reasons" else cast(new.c[c], Text) for c in written]
    return or_(
        tuple_(*stored).is_distinct_from(tuple_(*fresh)),
        and_(new.c.active.is_(True), CV.c.defection_reason.is_not(None)),
    )


def _assignments(new: Any, now: Moment, *, with_clv: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {c: new.c[c] for c in COLUMNS}
    if with_clv:
        values["clv_predicted_minor"] = new.c.clv_predicted_minor
    # A customer who buys again is active: the defection reason no longer applies (history stays).
    values["defection_reason"] = case((new.c.active.is_(True), None), else_=CV.c.defection_reason)
    values["updated_at"] = at(now)
    return values


def _transitions(
    changes: Sequence[Sequence[Any]], now: datetime
) -> tuple[list[dict[str, Any]], list[Any], int]:
    """Ladder history rows and events of (customer, old stage, stage, old level, level, score,
    reasons, tier) rows: a stage change, or a valuable customer crossing into high risk."""
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
    return history, events, at_risk


async def _record(
    session: AsyncSession, uow: UnitOfWork, changes: Sequence[Sequence[Any]], now: datetime
) -> dict[str, int]:
    history, events, at_risk = _transitions(changes, now)
    if history:
        await session.execute(insert(LadderHistory), history)
    await uow.publish_many(events)
    return {"ladder_changes": len(history), "at_risk_published": at_risk}


# The transitions of a pass over everyone on PostgreSQL, kept for the transaction: the ladder history
# and the events are written from here by statements, not from rows brought into Python (a first scoring
# moves every customer: a million events).
_MOVES = Table(
    "value_moves",
    MetaData(),
    Column("customer_id", String),
    Column("old_stage", String),
    Column("ladder_stage", String),
    Column("old_level", String),
    Column("risk_level", String),
    Column("risk_score", Integer),
    Column("risk_reasons", Text),
    Column("value_tier", String),
)
_MOVES_DDL = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS value_moves (customer_id text, old_stage text, ladder_stage text, "
    "old_level text, risk_level text, risk_score integer, risk_reasons text, value_tier text) "
    "ON COMMIT DELETE ROWS"
)


def _ladder_reasons() -> Any:
    """Every (from, to) pair of stages with its `ladder.reason`, as a VALUES list to join."""
    pairs = [(a, b, ladder.reason(a, b)) for a in ladder.STAGES for b in ladder.STAGES if a != b]
    columns = (sa_column("from_stage", String), sa_column("to_stage", String), sa_column("reason", String))
    return values(*columns, name="reasons").data(pairs)


async def _record_moves(session: AsyncSession, uow: UnitOfWork, now: datetime) -> dict[str, int]:
    """`_record` for the transitions in `value_moves`: the ladder history by one INSERT … SELECT, the
    ladder events by `publish_select` (made in the database), the at-risk events (a few) as usual.
    Events keep their order per customer: a stage change before the at-risk alarm."""
    moves = _MOVES.c
    reasons = _ladder_reasons()
    stage_moves = (
        select(
            moves.customer_id,
            moves.old_stage.label("from_stage"),
            moves.ladder_stage.label("to_stage"),
            reasons.c.reason,
        )
        .join(
            reasons, and_(reasons.c.from_stage == moves.old_stage, reasons.c.to_stage == moves.ladder_stage)
        )
        .order_by(moves.customer_id)
    )
    history = stage_moves.subquery()
    written = await session.execute(
        insert(LadderHistory).from_select(
            ["customer_id", "from_stage", "to_stage", "reason", "at"],
            select(
                history.c.customer_id,
                history.c.from_stage,
                history.c.to_stage,
                history.c.reason,
                literal(now, LadderHistory.__table__.c.at.type),
            ),
        )
    )
    await uow.publish_select(LadderStageChanged, stage_moves, {"at": now})
    alarms = (
        await session.execute(
            select(
                moves.customer_id,
                moves.ladder_stage,
                moves.ladder_stage,
                moves.old_level,
                moves.risk_level,
                moves.risk_score,
                moves.risk_reasons,
                moves.value_tier,
            )
            .where(moves.risk_level == "high", moves.old_level != "high", moves.value_tier.in_(VALUABLE))
            .order_by(moves.customer_id)
        )
    ).all()
    _, events, at_risk = _transitions(alarms, now)
    await uow.publish_many(events)
    await session.execute(delete(_MOVES))
    return {"ladder_changes": int(written.rowcount), "at_risk_published": at_risk}  # type: ignore[attr-defined]


async def _apply(
    session: AsyncSession,
    uow: UnitOfWork,
    now: datetime,
    ids: Sequence[str] | None,
    settings: ValueSettings,
    cuts: dict[str, list[float]] | None = None,
    predictions: Table | None = None,
) -> dict[str, int]:
    dialect = _dialect(session)
    id_list = list(ids) if ids is not None else None
    if cuts is None:
        cuts = await current_cut_points(session)
    new = _new_values(now, settings, dialect, cuts, id_list, predictions=predictions)
    everyone_pg = dialect == "postgresql" and id_list is None
    if everyone_pg:
        # Everyone's new values first, by CREATE TABLE AS, which PostgreSQL may run with parallel
        # workers (inside the UPDATE below the SELECT would run on one core); the UPDATE then joins it.
        await session.execute(text("DROP TABLE IF EXISTS value_new"))
        await session.execute(CreateTempTableAs("value_new", select(new)))
        await session.execute(text("ANALYZE value_new"))
        new = Table("value_new", MetaData(), *(Column(c.name, c.type) for c in new.c))
    moved = (
        new.c.customer_id,
        new.c.old_stage,
        new.c.ladder_stage,
        new.c.old_level,
        new.c.risk_level,
        new.c.risk_score,
        new.c.risk_reasons,
        new.c.value_tier,
    )
    with_clv = predictions is not None
    assignments = _assignments(new, now, with_clv=with_clv)
    update_all = update(CV).where(CV.c.customer_id == new.c.customer_id).values(**assignments)
    if dialect == "postgresql":
        # One statement: the update returns the transitions (`new` holds the old stage and level, read
        # in the statement's snapshot), so the new values are computed once, not once to find the
        # transitions and again to write them (half the time of the pass). Only the rows whose value
        # changed are written: rewriting every row (a new version of each, in both indexes) was 60 %
        # of the pass at 1,000,000 customers, most of them unchanged.
        applied = update_all.where(_changed(new, with_clv=with_clv)).returning(*moved).cte("applied")
        changed = or_(
            applied.c.old_stage != applied.c.ladder_stage,
            and_(
                applied.c.risk_level == "high",
                applied.c.old_level != "high",
                applied.c.value_tier.in_(VALUABLE),
            ),
        )
        if everyone_pg:  # the transitions stay in the database
            await session.execute(_MOVES_DDL)
            kept = select(*[cast(c, Text) if c.name == "risk_reasons" else c for c in applied.c]).where(
                changed
            )
            await session.execute(insert(_MOVES).from_select([c.name for c in _MOVES.c], kept))
            await session.execute(text("DROP TABLE value_new"))
            return await _record_moves(session, uow, now)
        changes = (await session.execute(select(*applied.c).where(changed))).all()
        return await _record(session, uow, changes, now)
    changes = (
        await session.execute(
            select(*moved).where(
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
    await session.execute(update_all)
    return await _record(session, uow, changes, now)


async def risk_explanations(
    session: AsyncSession, customer_id: str, *, now: datetime | None = None
) -> list[tuple[str, int, str]]:
    """Why the customer's stored risk score is what it is: (component, points, sentence), largest
    first, the trend components with their figures ("satisfaction fell from 9.0 to 4.0"). Empty for a
    customer without a value row. One statement (built once), the value row, the features it needs and
    the trend windows' counts together."""
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    found = (
        await session.execute(_explain_select(), {**risk.window_params(now, settings), "ids": [customer_id]})
    ).first()
    if found is None:
        return []
    reasons, currency, before, latest, recent_n, prior_n, recent_m, prior_m = found
    trends = risk.Trends(
        window_days=settings.trend_window_days,
        recent_purchases=int(recent_n or 0),
        prior_purchases=int(prior_n or 0),
        recent_spend_minor=int(recent_m or 0),
        prior_spend_minor=int(prior_m or 0),
        currency=currency,
        satisfaction_before=before,
        satisfaction_latest=latest,
    )
    return risk.explain(parse_reasons(reasons), trends)


_EXPLAIN: list[Any] = []


def _explain_select() -> Any:
    """`risk_explanations`' read, with `now`, `recent_from`, `prior_from` and `ids` (one id) as
    parameters: built once (the window starts are parameters, so the settings do not shape it)."""
    if not _EXPLAIN:
        win = risk.windows(NOW, load_value_settings(), IDS)
        _EXPLAIN.append(
            select(
                CV.c.risk_reasons,
                F.currency,
                F.satisfaction_before,
                F.satisfaction_latest,
                win.c.recent_n,
                win.c.prior_n,
                win.c.recent_m,
                win.c.prior_m,
            )
            .join(F, F.customer_id == CV.c.customer_id)
            .outerjoin(win, win.c.customer_id == CV.c.customer_id)
            .where(CV.c.customer_id.in_(IDS))
        )
    return _EXPLAIN[0]


def parse_reasons(raw: Any) -> dict[str, int]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {str(k): int(v) for k, v in (raw or {}).items()}


@dataclass(frozen=True, slots=True)
class Parameters:
    """The population figures a customer is scored against: the latest RFM cut points and tier floors
    (`rfm_cutpoints`) and CLV model (`clv_models`), with the stamps they were read at."""

    cuts: dict[str, list[float]]
    model: dict[str, Any] | None
    cuts_at: datetime | None
    model_at: datetime | None


# Per database (engine): the parameters last read. Every real-time scoring reads the two stamps in the
# statement it runs anyway and reloads on any difference, so a pass committed by another process (or
# rolled back in this one) is picked up by the next event: the cache is never stale.
_PARAMETERS: weakref.WeakKeyDictionary[Any, Parameters] = weakref.WeakKeyDictionary()


def _stamps() -> tuple[Any, Any]:
    return (
        select(func.max(RfmCutpoints.computed_at)).scalar_subquery(),
        select(func.max(ClvModel.fitted_at)).scalar_subquery(),
    )


async def parameters(session: AsyncSession) -> Parameters:
    """The current parameters, read from the database (and cached for the real-time path)."""
    cuts_at, model_at = (await session.execute(select(*_stamps()))).one()
    model = await current_model(session)
    found = Parameters(
        cuts=await current_cut_points(session),
        model=model.params if model is not None else None,
        cuts_at=_utc(cuts_at),
        model_at=_utc(model_at),
    )
    _PARAMETERS[session.get_bind()] = found
    return found


def forget_parameters(session: AsyncSession) -> None:
    _PARAMETERS.pop(session.get_bind(), None)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SMALL = 100  # up to this many customers, the per-customer path; more: the set-based one


async def score_customers(
    session: AsyncSession, uow: UnitOfWork, customer_ids: Sequence[str], *, now: datetime | None = None
) -> dict[str, int]:
    """Real-time path: recompute these customers' value, risk and stage from their features, the
    current cut points, tier floors and CLV model; record and publish the transitions. Runs inside the
    caller's transaction (it does not commit).

    For a few customers (an event): one SELECT by primary key (their features, whether they have a value
    row, their old stage and level, and the stamps of the cached population parameters), their CLV
    predicted in Python, and one UPDATE … FROM computing and writing everything else for just them
    (RETURNING the new stage and level); rows are created or deleted only when needed. Larger batches
    take the set-based path of the scheduled pass. Both write the same expressions (`_new_values`)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {"ladder_changes": 0, "at_risk_published": 0}
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    if len(ids) > SMALL:
        await _ensure_rows(session, now, ids)
        model = await current_model(session)
        found, data = await _rfmt(session, now, ids)
        loaded = await _write_predictions(session, model.params if model else None, found, data, settings)
        return await _apply(session, uow, now, ids, settings, predictions=loaded)
    return await _score_few(session, uow, ids, now, settings)


IDS: BindParameter[Any] = bindparam("ids", expanding=True)
PREDICTED: ColumnElement[Any] = bindparam("predicted", type_=BigInteger())

# Templates of the real-time UPDATE for one customer, per dialect, cut points and settings: building
# that expression tree (every risk component, RFM score, tier and stage as SQL) costs far more Python
# than running it, so it is built once per set of population parameters and reused for every event.
_TEMPLATES: dict[tuple[str, str, str], Any] = {}


def _update_returning(new: Any, now: Moment) -> Any:
    return (
        update(CV)
        .where(CV.c.customer_id == new.c.customer_id)
        .values(**_assignments(new, now, with_clv=True))
        .returning(
            CV.c.customer_id,
            CV.c.ladder_stage,
            CV.c.risk_level,
            CV.c.risk_score,
            CV.c.risk_reasons,
            CV.c.value_tier,
        )
    )


def _one_customer_update(dialect: str, cuts: dict[str, list[float]], settings: ValueSettings) -> Any:
    """`_update_returning(_new_values(…))` for one customer, as a template with the parameters `now`,
    `recent_from`, `prior_from` (`risk.window_params`), `ids` (one id) and `predicted`."""
    key = (dialect, json.dumps(cuts, sort_keys=True), settings.model_dump_json())
    statement = _TEMPLATES.get(key)
    if statement is None:
        if len(_TEMPLATES) >= 16:  # cut points change with each scheduled pass: keep the recent ones
            _TEMPLATES.pop(next(iter(_TEMPLATES)))
        new = _new_values(NOW, settings, dialect, cuts, IDS, PREDICTED)
        statement = _TEMPLATES[key] = _update_returning(new, NOW)
    return statement


_FEW_SELECTS: dict[str, Any] = {}

# The real-time statements are templates (`_one_customer_update` is ~47 KB of SQL, its cut points and
# weights bound as parameters) executed with one or a few customer ids: PostgreSQL planned the update
# afresh at each execution (a custom plan: 1.7 ms median, 4.6 ms p99 of planning per event at 100,000
# customers) where the plan is the same for every id. For the rest of the transaction (the real-time
# hooks: point reads and writes by customer id), prepared statements use their generic plan, planned
# once per connection. One event to features, value, risk, stage and segments at 100,000 customers /
# 2,000,000 purchases: p99 21.7-22.6 -> 13.1-14.8 ms, median 10.7-12.9 -> 8.5-9.1 ms (alternated).
_GENERIC_PLANS = text("SET LOCAL plan_cache_mode = force_generic_plan")


def _few_select(dialect: str) -> Any:
    """The real-time path's read of a few customers (features, value row, old stage and level, the
    population parameters' stamps, the BG/NBD inputs), with `now` and `ids` as parameters: built once
    per dialect."""
    statement = _FEW_SELECTS.get(dialect)
    if statement is None:
        cuts_at, model_at = _stamps()
        statement = _FEW_SELECTS[dialect] = (
            select(
                F.customer_id,
                F.erased,
                F.purchase_count,
                CV.c.customer_id,
                CV.c.ladder_stage,
                CV.c.risk_level,
                cuts_at,
                model_at,
                *_rfmt_columns(NOW, dialect),
            )
            .outerjoin(CV, CV.c.customer_id == F.customer_id)
            .where(F.customer_id.in_(IDS))
        )
    return statement


_FEW_TEMPLATES: dict[tuple[str, str, str, int], Any] = {}


def _few_customers_update(dialect: str, cuts: dict[str, list[float]], settings: ValueSettings, n: int) -> Any:
    """`_update_returning(_new_values(…))` for a few customers (`ids`), with `n` prediction slots bound
    as `c<i>` (customer id, "" for an unused slot) and `p<i>` (predicted CLV): a template per slot
    count, as `_one_customer_update` is for one (a consumer's waves of customers reuse them)."""
    key = (dialect, json.dumps(cuts, sort_keys=True), settings.model_dump_json(), n)
    statement = _FEW_TEMPLATES.get(key)
    if statement is None:
        if len(_FEW_TEMPLATES) >= 512:
            _FEW_TEMPLATES.pop(next(iter(_FEW_TEMPLATES)))
        slots = [
            (F.customer_id == bindparam(f"c{i}"), bindparam(f"p{i}", type_=BigInteger())) for i in range(n)
        ]
        predicted = case(*slots, else_=null()) if slots else cast(null(), BigInteger())
        new = _new_values(NOW, settings, dialect, cuts, IDS, predicted)
        statement = _FEW_TEMPLATES[key] = _update_returning(new, NOW)
    return statement


async def _score_few(
    session: AsyncSession, uow: UnitOfWork, ids: list[str], now: datetime, settings: ValueSettings
) -> dict[str, int]:
    dialect = _dialect(session)
    if dialect == "postgresql":
        await session.execute(_GENERIC_PLANS)
    rows = (await session.execute(_few_select(dialect), {"now": now, "ids": padded(ids)})).all()
    known = {row[0] for row in rows}
    erased = [row[0] for row in rows if row[1]]
    # An id without features (merged into another) keeps no value row; an erased customer keeps nothing.
    gone = [c for c in ids if c not in known]
    if gone:
        await session.execute(delete(CustomerValue).where(CustomerValue.customer_id.in_(gone)))
    if erased:
        for table in (CustomerValue, LadderHistory, Defection):
            await session.execute(delete(table).where(table.customer_id.in_(erased)))
    live = [row for row in rows if not row[1]]
    if not live:
        return {"ladder_changes": 0, "at_risk_published": 0}
    missing = [row[0] for row in live if row[3] is None]
    if missing:
        await _ensure_rows(session, now, missing)
    cached = _PARAMETERS.get(session.get_bind())
    stamps = (_utc(live[0][6]), _utc(live[0][7]))
    if cached is None or (cached.cuts_at, cached.model_at) != stamps:
        cached = await parameters(session)
    buyers = [row for row in live if row[2] > 0]
    data = _rfmt_data([row[8:] for row in buyers])
    predicted = dict(zip((row[0] for row in buyers), _predicted(cached.model, data, settings), strict=True))
    if len(live) == 1:  # one event's customer: the template, with this moment, id and prediction
        customer_id = live[0][0]
        params = {**risk.window_params(now, settings), "ids": [customer_id]}
        params["predicted"] = predicted.get(customer_id)
        statement = _one_customer_update(dialect, cached.cuts, settings)
        written = (await session.execute(statement, params)).all()
    else:  # a few customers (a consumer's wave): the template for this many predictions
        params = {**risk.window_params(now, settings), "ids": padded([row[0] for row in live])}
        slots = 1 << max(len(predicted) - 1, 0).bit_length()  # a power of two: few templates
        pairs = list(predicted.items()) + [("", None)] * (slots - len(predicted))  # "" matches no one
        for i, (customer_id, value) in enumerate(pairs):
            params[f"c{i}"], params[f"p{i}"] = customer_id, value
        statement = _few_customers_update(dialect, cached.cuts, settings, slots)
        written = (await session.execute(statement, params)).all()
    # The old stage and level: read above (a row created just now starts as a low-risk prospect).
    before = {row[0]: (row[4] or "prospect", row[5] or "low") for row in live}
    changes = []
    for customer_id, stage, level, score_, reasons, tier_ in written:
        old_stage, old_level = before[customer_id]
        moved = old_stage != stage
        alarm = level == "high" and old_level != "high" and tier_ in VALUABLE
        if moved or alarm:
            changes.append((customer_id, old_stage, stage, old_level, level, score_, reasons, tier_))
    return await _record(session, uow, sorted(changes), now)


async def score_everyone(uow: UnitOfWork, *, now: datetime | None = None) -> dict[str, int]:
    """`score_customers` for every customer at once, set-based (the features recompute runs it): the
    rows ensured, every prediction written in one pass, then the one SELECT of transitions and the one
    UPDATE … FROM of the scheduled pass — against the current cut points, floors and model."""
    session = uow.session
    now = now or datetime.now(UTC)
    settings = load_value_settings()
    await _ensure_rows(session, now, None)
    if _dialect(session) == "postgresql":  # rows just created: plan the passes below for them
        await session.execute(text("ANALYZE customer_value"))
    model = await current_model(session)
    ids, data = await _rfmt(session, now, None)
    loaded = await _write_predictions(session, model.params if model else None, ids, data, settings)
    del data
    return await _apply(session, uow, now, None, settings, predictions=loaded)


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
    loaded = await _write_predictions(session, params, ids, data, settings)
    floors, ranked = await tiers.floors(session, settings.tier_shares)
    if floors:
        session.add(RfmCutpoints(dimension="tier", computed_at=now, cut_points=floors, population=ranked))
    await session.flush()
    changes = await _apply(session, uow, now, None, settings, predictions=loaded)
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

"""HTTP routes of customer value, risk and stage, defections and their reports."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.segmentation.value import service
from services.segmentation.value.ladder import STAGES
from services.segmentation.value.models import CustomerValue, Defection, LadderHistory
from services.segmentation.value.tiers import TIERS
from shared.errors import PROBLEM_RESPONSES, Conflict, NotFound, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["value"])


class DefectionReason(StrEnum):
    """Why customers are lost (DOMAIN.md). moved … death are the non-relational reasons."""

    COMPETITION = "competition"
    MOVED = "moved"
    JOB_CHANGE = "job_change"
    SOCIO_ECONOMIC_CHANGE = "socio_economic_change"
    DEATH = "death"
    COMPLAINT_NEVER_VOICED = "complaint_never_voiced"
    COMPLAINT_NOT_ATTENDED = "complaint_not_attended"
    SLOW_DECAY = "slow_decay"
    SMALL_BAD_EXPERIENCES = "small_bad_experiences"
    COMMUNICATION_ERROR = "communication_error"


NON_RELATIONAL = {"moved", "job_change", "socio_economic_change", "death"}


class RfmOut(BaseModel):
    recency: int | None = Field(examples=[4], description="1–5, 5 = most recent; null without purchases")
    frequency: int | None = Field(examples=[5])
    monetary: int | None = Field(examples=[3])
    segment: str | None = Field(examples=["champions"])


class ClvOut(BaseModel):
    currency: str | None = Field(examples=["EUR"])
    historic_minor: int = Field(examples=[125_000], description="Net spend so far, minor units")
    predicted_minor: int | None = Field(examples=[48_000], description="Next 12 months, BG/NBD + Gamma-Gamma")


class ReasonOut(BaseModel):
    component: str = Field(examples=["recency"])
    points: int = Field(examples=[35])
    explanation: str


class RiskOut(BaseModel):
    score: int = Field(ge=0, le=100, examples=[62])
    level: str = Field(examples=["high"])
    reasons: list[ReasonOut]


class StageChangeOut(BaseModel):
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str


class ValueOut(BaseModel):
    customer_id: str
    rfm: RfmOut
    clv: ClvOut
    value_tier: str = Field(examples=["high"], description="top, high, medium or rest")
    risk: RiskOut
    active: bool
    lapsed: bool
    defection_reason: str | None
    ladder_stage: str = Field(examples=["supporter"])
    stage_history: list[StageChangeOut]
    updated_at: datetime = Field(
        description="when one of these figures last changed (a pass that changes nothing writes nothing)"
    )


class DefectionIn(BaseModel):
    reason: DefectionReason = Field(examples=["complaint_not_attended"])
    noted_by: str = Field(min_length=1, max_length=100, examples=["agent-17"])
    note: str | None = Field(default=None, max_length=500, examples=["Two calls about the refund, no answer"])


class DefectionOut(BaseModel):
    customer_id: str
    reason: str
    noted_by: str
    note: str | None
    at: datetime


class ReasonCount(BaseModel):
    reason: str
    non_relational: bool
    customers: int


class DefectionReport(BaseModel):
    lapsed_customers: int = Field(description="Customers lapsed now")
    lapsed_without_reason: int
    defections_recorded: int = Field(description="Defections recorded in the period")
    by_reason: list[ReasonCount]


class MatrixCell(BaseModel):
    value_tier: str
    risk_level: str
    customers: int


class RiskValueMatrix(BaseModel):
    cells: list[MatrixCell] = Field(description="Every tier × level pair, zeros included")


@router.get(
    "/customers/{customer_id}/value",
    response_model=ValueOut,
    summary="A customer's value, risk and ladder stage",
    description=(
        "RFM scores (1–5) and segment, historic and predicted CLV, value tier, the abandonment-risk score "
        "with each component's points, active/lapsed, the defection reason if recorded, and the loyalty-"
        "ladder stage with its history (oldest first)."
    ),
    responses={404: {"model": Problem, "description": "No value computed for this customer yet"}},
)
async def read_value(customer_id: str, uow: UowDep) -> ValueOut:
    async with uow:
        row = await uow.session.get(CustomerValue, customer_id)
        if row is None:
            raise NotFound(f"no value computed for customer {customer_id} yet", customer_id=customer_id)
        history = (
            await uow.session.scalars(
                select(LadderHistory)
                .where(LadderHistory.customer_id == customer_id)
                .order_by(LadderHistory.id)
            )
        ).all()
        explained = await service.risk_explanations(uow.session, customer_id)
    return ValueOut(
        customer_id=row.customer_id,
        rfm=RfmOut(recency=row.rfm_r, frequency=row.rfm_f, monetary=row.rfm_m, segment=row.rfm_segment),
        clv=ClvOut(
            currency=row.currency,
            historic_minor=row.clv_historic_minor,
            predicted_minor=row.clv_predicted_minor,
        ),
        value_tier=row.value_tier,
        risk=RiskOut(
            score=row.risk_score,
            level=row.risk_level,
            reasons=[ReasonOut(component=k, points=v, explanation=text) for k, v, text in explained],
        ),
        active=row.active,
        lapsed=row.lapsed,
        defection_reason=row.defection_reason,
        ladder_stage=row.ladder_stage,
        stage_history=[
            StageChangeOut(from_stage=h.from_stage, to_stage=h.to_stage, at=h.at, reason=h.reason)
            for h in history
        ],
        updated_at=row.updated_at,
    )


@router.post(
    "/customers/{customer_id}/defection",
    status_code=status.HTTP_201_CREATED,
    response_model=DefectionOut,
    summary="Record why a lapsed customer was lost",
    description=(
        "Only for a lapsed customer (a 409 otherwise). `reason` is one of DOMAIN.md's taxonomy: "
        + ", ".join(r.value for r in DefectionReason)
        + ". An unknown reason is a 422 naming `body.reason`. The reason shows on the customer's value "
        "until they buy again; every record is kept for the defection report."
    ),
    responses={
        **PROBLEM_RESPONSES,
        404: {"model": Problem, "description": "No value computed for this customer yet"},
        409: {"model": Problem, "description": "The customer is not lapsed"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "complaint": {
                            "value": {
                                "reason": "complaint_not_attended",
                                "noted_by": "agent-17",
                                "note": "refund",
                            }
                        }
                    }
                }
            }
        }
    },
)
async def record_defection(customer_id: str, body: DefectionIn, uow: UowDep) -> DefectionOut:
    now = datetime.now(UTC)
    async with uow:
        row = await uow.session.get(CustomerValue, customer_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no value computed for customer {customer_id} yet", customer_id=customer_id)
        if not row.lapsed:
            raise Conflict(
                f"customer {customer_id} is not lapsed: a defection is recorded for lapsed customers only"
            )
        row.defection_reason = body.reason.value
        uow.session.add(
            Defection(
                customer_id=customer_id,
                reason=body.reason.value,
                note=body.note,
                noted_by=body.noted_by,
                at=now,
            )
        )
        await uow.commit()
    return DefectionOut(
        customer_id=customer_id, reason=body.reason.value, noted_by=body.noted_by, note=body.note, at=now
    )


@router.get(
    "/reports/defections",
    response_model=DefectionReport,
    summary="How many customers were lost, and why",
    description="Lapsed customers now (with and without a recorded reason) and defections recorded in the "
    "period (`since`/`until`, both optional) by reason, largest first.",
    responses=PROBLEM_RESPONSES,
)
async def defection_report(
    uow: UowDep,
    since: datetime | None = Query(default=None, examples=["2026-01-01T00:00:00Z"]),
    until: datetime | None = Query(default=None, examples=["2026-12-31T23:59:59Z"]),
) -> DefectionReport:
    async with uow:
        session = uow.session
        lapsed = (
            await session.execute(select(func.count()).where(CustomerValue.lapsed.is_(True)))
        ).scalar_one()
        without = (
            await session.execute(
                select(func.count()).where(
                    CustomerValue.lapsed.is_(True), CustomerValue.defection_reason.is_(None)
                )
            )
        ).scalar_one()
        stmt: Any = select(Defection.reason, func.count(func.distinct(Defection.customer_id))).group_by(
            Defection.reason
        )
        if since is not None:
            stmt = stmt.where(Defection.at >= since)
        if until is not None:
            stmt = stmt.where(Defection.at <= until)
        counts = (await session.execute(stmt)).all()
    by_reason = sorted(
        (ReasonCount(reason=r, non_relational=r in NON_RELATIONAL, customers=int(n)) for r, n in counts),
        key=lambda c: (-c.customers, c.reason),
    )
    return DefectionReport(
        lapsed_customers=int(lapsed),
        lapsed_without_reason=int(without),
        defections_recorded=sum(c.customers for c in by_reason),
        by_reason=by_reason,
    )


@router.get(
    "/reports/risk-value-matrix",
    response_model=RiskValueMatrix,
    summary="Customers by value tier × risk level",
    description="Counts of customers with at least one purchase in each (tier, risk level) cell — monitor "
    "risk and value together: the top/high × high cell is where to act first.",
)
async def risk_value_matrix(uow: UowDep) -> RiskValueMatrix:
    async with uow:
        rows = (
            await uow.session.execute(
                select(CustomerValue.value_tier, CustomerValue.risk_level, func.count())
                .where(CustomerValue.rfm_f.is_not(None))
                .group_by(CustomerValue.value_tier, CustomerValue.risk_level)
            )
        ).all()
    found = {(t, lvl): int(n) for t, lvl, n in rows}
    return RiskValueMatrix(
        cells=[
            MatrixCell(value_tier=t, risk_level=lvl, customers=found.get((t, lvl), 0))
            for t in TIERS
            for lvl in ("high", "medium", "low")
        ]
    )


class ScoreCount(BaseModel):
    score: int = Field(examples=[5], description="1–5")
    customers: int = Field(examples=[1_204])


class RfmDistribution(BaseModel):
    customers_scored: int = Field(examples=[6_020], description="Customers with at least one purchase")
    recency: list[ScoreCount] = Field(description="Scores 1–5, zeros included")
    frequency: list[ScoreCount]
    monetary: list[ScoreCount]
    segments: dict[str, int] = Field(
        examples=[{"champions": 410, "at_risk": 220}], description="Customers per named RFM segment"
    )


class StageCount(BaseModel):
    stage: str = Field(examples=["client"])
    customers: int = Field(examples=[350], description="Customers at this stage now")
    reached: int = Field(examples=[420], description="Customers at this stage or a higher one (the funnel)")


class LadderReport(BaseModel):
    stages: list[StageCount] = Field(description="Every stage in ladder order, zeros included")


@router.get(
    "/reports/rfm-distribution",
    response_model=RfmDistribution,
    summary="How customers spread over the RFM scores",
    description="For each of recency, frequency and monetary value, how many customers have each score "
    "1–5 (quantile cut points of the last value pass), and how many are in each named RFM segment.",
)
async def rfm_distribution(uow: UowDep) -> RfmDistribution:
    async with uow:
        counts: dict[str, dict[int, int]] = {}
        for name, column in (
            ("recency", CustomerValue.rfm_r),
            ("frequency", CustomerValue.rfm_f),
            ("monetary", CustomerValue.rfm_m),
        ):
            rows = await uow.session.execute(
                select(column, func.count()).where(column.is_not(None)).group_by(column)
            )
            counts[name] = {int(score): int(n) for score, n in rows.all() if score is not None}
        segments = await uow.session.execute(
            select(CustomerValue.rfm_segment, func.count())
            .where(CustomerValue.rfm_segment.is_not(None))
            .group_by(CustomerValue.rfm_segment)
        )
        named = {str(seg): int(n) for seg, n in segments.all()}

    def scores(name: str) -> list[ScoreCount]:
        return [ScoreCount(score=k, customers=counts[name].get(k, 0)) for k in range(1, 6)]

    return RfmDistribution(
        customers_scored=sum(counts["frequency"].values()),
        recency=scores("recency"),
        frequency=scores("frequency"),
        monetary=scores("monetary"),
        segments=dict(sorted(named.items(), key=lambda item: -item[1])),
    )


@router.get(
    "/reports/ladder",
    response_model=LadderReport,
    summary="The loyalty ladder as a funnel",
    description="Customers at each ladder stage now, and how many stand at that stage or higher — the "
    f"funnel from prospect to partner. Stages: {', '.join(STAGES)}.",
)
async def ladder_report(uow: UowDep) -> LadderReport:
    async with uow:
        rows = await uow.session.execute(
            select(CustomerValue.ladder_stage, func.count()).group_by(CustomerValue.ladder_stage)
        )
        now = {str(stage): int(n) for stage, n in rows.all()}
    reached, running = {}, 0
    for stage in reversed(STAGES):
        running += now.get(stage, 0)
        reached[stage] = running
    return LadderReport(
        stages=[StageCount(stage=s, customers=now.get(s, 0), reached=reached[s]) for s in STAGES]
    )


class RecomputeOut(BaseModel):
    computed_at: datetime
    customers_with_purchases: int
    cut_points: dict[str, list[float]] = Field(examples=[{"recency": [12.0, 40.5, 90.0, 200.0]}])
    tier_floors_minor: list[float]
    clv_model: dict[str, float] | None = Field(
        description="BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, v)"
    )
    ladder_changes: int
    at_risk_published: int


@router.post(
    "/value/recompute",
    response_model=RecomputeOut,
    summary="Run the scheduled value pass now",
    description="Recomputes the RFM cut points (quantiles), fits the CLV model, recomputes the tier floors "
    "(ranks) and updates every customer's value, risk and stage, publishing the transitions. Normally run "
    f"on a schedule; stages: {', '.join(STAGES)}.",
)
async def recompute(uow: UowDep) -> RecomputeOut:
    async with uow:
        out = await service.recompute_population(uow.session, uow)
        await uow.commit()
    return RecomputeOut(**out)

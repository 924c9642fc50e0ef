"""Surveys' use cases: recording a survey answer (a contact on the timeline too) and reading them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions import timeline
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Direction, InteractionKind
from services.interactions.models import InteractionRow
from services.interactions.surveys import domain
from services.interactions.surveys.models import SurveyRow
from services.interactions.surveys.schemas import SurveyCreate
from shared.contracts.interactions import SurveyAnswered
from shared.errors import Gone, InvalidInput, NotFound
from shared.uow import UnitOfWork

SUBJECT_TYPE = "survey"
MAX_PAGE = 200


async def _by_key(session: AsyncSession, source_system: str, key: str) -> SurveyRow | None:
    return cast(
        SurveyRow | None,
        await session.scalar(
            select(SurveyRow).where(
                SurveyRow.source_system == source_system, SurveyRow.idempotency_key == key
            )
        ),
    )


def summary(csat: int | None, nps: int | None, total: domain.Score | None) -> str:
    """The survey's line on the timeline: its scores, never its comment."""
    parts = []
    if csat is not None:
        parts.append(f"CSAT {csat}/{domain.CSAT_MAX}")
    if nps is not None:
        parts.append(f"NPS {nps} ({domain.nps_category(nps).value})")
    if total is not None:
        parts.append(f"overall {total.score}/{total.maximum}")
    return "Survey answered: " + ", ".join(parts)


async def record(uow: UnitOfWork, directory: CustomerDirectory, data: SurveyCreate) -> tuple[SurveyRow, bool]:
    """Store a survey answer with its timeline contact and publish `survey_answered`, in one
    transaction. Returns (survey, created): the same idempotency key again returns the first one."""
    ratings = data.ratings.rated() if data.ratings is not None else {}
    expectations = data.expectations.rated() if data.expectations is not None else {}
    for name in expectations:
        if name not in ratings:
            raise InvalidInput(
                f"body.expectations.{name}",
                f"an expectation is compared with a rating: rate {name} too (ratings.{name})",
            )
    async with uow:
        session = uow.session
        if data.idempotency_key is not None:
            existing = await _by_key(session, data.source_system, data.idempotency_key)
            if existing is not None:
                return existing, False
        found = await directory.lookup(session, data.customer_id)
        if found is None:
            raise InvalidInput("body.customer_id", f"unknown customer {data.customer_id}")
        if found.erased:
            raise InvalidInput("body.customer_id", f"customer {data.customer_id} was erased")
        customer_id = found.customer_id
        if data.about_interaction_id is not None:
            about = await session.get(InteractionRow, data.about_interaction_id)
            if about is None:
                raise InvalidInput("body.about_interaction_id", f"no contact {data.about_interaction_id}")
            if about.customer_id != customer_id:
                raise InvalidInput("body.about_interaction_id", "that contact is another customer's")
            if data.answered_at < about.occurred_at:
                raise InvalidInput("body.answered_at", "the survey cannot be answered before its contact")
        total = domain.overall(ratings)
        category = domain.nps_category(data.nps) if data.nps is not None else None
        survey_id = str(uuid.uuid4())
        contact = timeline.new_interaction(
            customer_id=customer_id,
            origin_customer_id=data.customer_id,
            kind=InteractionKind.SURVEY_ANSWER.value,
            channel=data.channel.value,
            direction=Direction.INBOUND.value,
            occurred_at=data.answered_at,
            source_system=data.source_system,
            summary=summary(data.csat, data.nps, total),
            attributes={
                "csat": data.csat,
                "nps": data.nps,
                "overall": total.score if total else None,
                "overall_max": total.maximum if total else None,
            },
            subject_type=SUBJECT_TYPE,
            subject_id=survey_id,
        )
        survey = SurveyRow(
            id=survey_id,
            customer_id=customer_id,
            origin_customer_id=data.customer_id,
            interaction_id=contact.id,
            about_interaction_id=data.about_interaction_id,
            channel=data.channel.value,
            answered_at=data.answered_at,
            recorded_at=datetime.now(UTC),
            csat=data.csat,
            nps=data.nps,
            nps_category=category.value if category else None,
            ratings=ratings,
            expectations=expectations,
            overall=total.score if total else None,
            overall_max=total.maximum if total else None,
            comment=data.comment,
            source_system=data.source_system,
            idempotency_key=data.idempotency_key,
        )
        session.add_all([survey, contact])
        try:
            await session.flush()
        except IntegrityError:
            await uow.rollback()  # the same key, recorded concurrently: that one won
            if data.idempotency_key is not None:
                existing = await _by_key(session, data.source_system, data.idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        await uow.publish(
            SurveyAnswered(
                survey_id=survey.id,
                customer_id=customer_id,
                answered_at=survey.answered_at,
                channel=survey.channel,
                about_interaction_id=survey.about_interaction_id,
                csat=survey.csat,
                nps=survey.nps,
                nps_category=survey.nps_category,
                overall=survey.overall,
                overall_max=survey.overall_max,
                ratings=ratings,
                interaction_id=contact.id,
            )
        )
        await uow.commit()
    return survey, True


async def get(uow: UnitOfWork, survey_id: str) -> SurveyRow:
    async with uow:
        survey = await uow.session.get(SurveyRow, survey_id)
    if survey is None:
        raise NotFound(f"survey {survey_id} does not exist", survey_id=survey_id)
    return survey


async def customer_surveys(
    uow: UnitOfWork, directory: CustomerDirectory, customer_id: str, *, cursor: str | None, limit: int
) -> tuple[list[SurveyRow], str | None]:
    """A page of the customer's surveys, newest first (a merged id shows the survivor's), and the
    cursor of the next page."""
    async with uow:
        session = uow.session
        found = await directory.lookup(session, customer_id)
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
        if found.erased:
            raise Gone(f"customer {customer_id} was erased")
        statement = select(SurveyRow).where(SurveyRow.customer_id == found.customer_id)
        if cursor:
            at, row_id = timeline.decode_cursor(cursor)
            statement = statement.where(tuple_(SurveyRow.answered_at, SurveyRow.id) < tuple_(at, row_id))
        limit = max(1, min(limit, MAX_PAGE))
        rows = list(
            await session.scalars(
                statement.order_by(SurveyRow.answered_at.desc(), SurveyRow.id.desc()).limit(limit + 1)
            )
        )
        await uow.commit()  # the lookup may have remembered a customer
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, timeline.encode_cursor(rows[-1].answered_at, rows[-1].id)
    return rows, None

"""The reports' SQL: every figure is grouped by UTC day in the database, the same way on SQLite and
PostgreSQL, so a report reads at most one row per day and series whatever the table's size.

Complaints belong to another package of this service; their table's column names are a contract
(see `complaints.models`), read here through a Core `table()` clause rather than the ORM class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Boolean, ColumnElement, String, case, column, func, select, table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.interactions.models import InteractionRow
from services.interactions.surveys import domain as surveys
from services.interactions.surveys.models import SurveyRow
from shared.db import UTCDateTime

COMPLAINTS = table(
    "complaints",
    column("id", String()),
    column("channel", String()),
    column("priority", String()),
    column("opened_at", UTCDateTime()),
    column("first_response_at", UTCDateTime()),
    column("resolved_at", UTCDateTime()),
    column("closed_at", UTCDateTime()),
    column("first_response_due", UTCDateTime()),
    column("resolution_due", UTCDateTime()),
    column("first_response_breached", Boolean()),
    column("resolution_breached", Boolean()),
)


def utc_day(
    session: AsyncSession, moment: ColumnElement[datetime] | InstrumentedAttribute[datetime]
) -> ColumnElement[str]:
    """'YYYY-MM-DD' of a timestamp column, in UTC. SQLite holds UTC wall-clock text (see
    `UTCDateTime`); PostgreSQL's timestamptz is read in UTC whatever the session's time zone."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", moment), "YYYY-MM-DD")
    return func.date(moment)


@dataclass(frozen=True, slots=True)
class ChannelDay:
    day: date
    channel: str
    contacts: int


async def contacts_per_day(
    session: AsyncSession, since: datetime, until: datetime, kinds: list[str]
) -> list[ChannelDay]:
    """How many contacts (timeline rows) each channel had each day in [since, until)."""
    i = InteractionRow
    day = utc_day(session, i.occurred_at).label("day")
    statement = (
        select(day, i.channel, func.count().label("contacts"))
        .where(i.occurred_at >= since, i.occurred_at < until)
        .group_by(day, i.channel)
    )
    if kinds:
        statement = statement.where(i.kind.in_(kinds))
    rows = await session.execute(statement)
    return [ChannelDay(date.fromisoformat(d), str(channel), int(n)) for d, channel, n in rows]


@dataclass(frozen=True, slots=True)
class SatisfactionDay:
    """Sums and counts (they add up across days, averages do not)."""

    day: date
    responses: int
    csat_responses: int
    csat_sum: int
    nps_responses: int
    promoters: int
    detractors: int
    overall_responses: int
    overall_sum: int
    overall_max_sum: int


async def satisfaction_per_day(
    session: AsyncSession, since: datetime, until: datetime, channels: list[str]
) -> list[SatisfactionDay]:
    """Survey answers per day in [since, until), as sums and counts."""
    s = SurveyRow
    day = utc_day(session, s.answered_at).label("day")
    statement = (
        select(
            day,
            func.count(),
            func.count(s.csat),
            func.coalesce(func.sum(s.csat), 0),
            func.count(s.nps),
            func.count(case((s.nps >= surveys.PROMOTER_FROM, 1))),
            func.count(case((s.nps <= surveys.DETRACTOR_UP_TO, 1))),
            func.count(s.overall),
            func.coalesce(func.sum(s.overall), 0),
            func.coalesce(func.sum(s.overall_max), 0),
        )
        .where(s.answered_at >= since, s.answered_at < until)
        .group_by(day)
    )
    if channels:
        statement = statement.where(s.channel.in_(channels))
    rows = await session.execute(statement)
    return [SatisfactionDay(date.fromisoformat(row[0]), *(int(v or 0) for v in row[1:])) for row in rows]


@dataclass(frozen=True, slots=True)
class ComplaintFacts:
    id: str
    channel: str
    priority: str
    opened_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    first_response_due: datetime
    resolution_due: datetime
    first_response_breached: bool
    resolution_breached: bool


async def complaints_touching(
    session: AsyncSession, since: datetime, until: datetime, channels: list[str]
) -> list[ComplaintFacts]:
    """Complaints opened, first answered, resolved or closed in [since, until): the rows the complaint
    report needs (a few per day even for a large business, so read as they are)."""
    c = COMPLAINTS.c
    inside = [
        (moment >= since) & (moment < until)
        for moment in (c.opened_at, c.first_response_at, c.resolved_at, c.closed_at)
    ]
    statement = select(*COMPLAINTS.c).where(inside[0] | inside[1] | inside[2] | inside[3])
    if channels:
        statement = statement.where(c.channel.in_(channels))
    rows = await session.execute(statement)
    return [
        ComplaintFacts(
            id=row.id,
            channel=row.channel,
            priority=row.priority,
            opened_at=row.opened_at,
            first_response_at=row.first_response_at,
            resolved_at=row.resolved_at,
            closed_at=row.closed_at,
            first_response_due=row.first_response_due,
            resolution_due=row.resolution_due,
            first_response_breached=bool(row.first_response_breached),
            resolution_breached=bool(row.resolution_breached),
        )
        for row in rows
    ]

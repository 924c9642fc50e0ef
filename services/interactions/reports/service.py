"""Reports' use cases: read the per-day figures in one read-only transaction, roll them up."""

from __future__ import annotations

from datetime import UTC, datetime

from services.interactions.reports import figures, queries
from services.interactions.reports.periods import ReportRange
from services.interactions.reports.schemas import ComplaintsReport, ContactsReport, SatisfactionReport
from shared.uow import UnitOfWork


async def contacts(uow: UnitOfWork, span: ReportRange, kinds: list[str]) -> ContactsReport:
    async with uow:
        days = await queries.contacts_per_day(uow.session, span.since, span.until, kinds)
    return figures.contacts(span, days, kinds)


async def satisfaction(uow: UnitOfWork, span: ReportRange, channels: list[str]) -> SatisfactionReport:
    async with uow:
        days = await queries.satisfaction_per_day(uow.session, span.since, span.until, channels)
    return figures.satisfaction(span, days, channels)


async def complaints(
    uow: UnitOfWork, span: ReportRange, channels: list[str], *, now: datetime | None = None
) -> ComplaintsReport:
    async with uow:
        facts = await queries.complaints_touching(uow.session, span.since, span.until, channels)
    return figures.complaints(span, facts, channels, now=now or datetime.now(UTC))

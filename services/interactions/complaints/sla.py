"""Service levels of complaints: the policies per channel and priority, the SLA watch that escalates
overdue complaints, and the compliance report.

The watch may run in several replicas at once: each breach is claimed by a conditional UPDATE
(`… WHERE first_response_breached = false AND first_response_at IS NULL AND first_response_due < now`)
in the same transaction as its history row and its outbox event. Only the transaction whose UPDATE
matched the row escalates it; a replica that comes second matches nothing (PostgreSQL re-checks the
condition after the first one commits; SQLite runs one writer at a time). So every complaint is
escalated at most once per target, and its `complaint_sla_breached` event is published exactly once.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions.complaints.domain import (
    DEFAULT_TARGETS,
    SETTLED,
    ComplaintStatus,
    EventKind,
    Priority,
    SlaTarget,
    Targets,
)
from services.interactions.complaints.models import Complaint, ComplaintEventRow, SlaPolicyRow
from services.interactions.complaints.schemas import (
    EscalationOut,
    SlaPolicyIn,
    SlaPolicyOut,
    SlaReport,
    SlaReportRow,
)
from services.interactions.domain import Channel
from shared.contracts.interactions import ComplaintSlaBreached
from shared.errors import InvalidInput
from shared.uow import UnitOfWork

COMPLAINTS = cast(Table, Complaint.__table__)
SCAN_BATCH = 500
MAX_REPORT_WINDOW = timedelta(days=366)


# --- policies --------------------------------------------------------------------------------------


async def targets_for(session: AsyncSession, channel: str, priority: str) -> Targets:
    """The policy in force for a channel and priority: the operator's, or the default."""
    row = await session.get(SlaPolicyRow, (channel, priority))
    if row is None:
        return DEFAULT_TARGETS[Priority(priority)]
    return Targets(timedelta(minutes=row.first_response_minutes), timedelta(minutes=row.resolution_minutes))


def _policy_out(channel: str, priority: Priority, row: SlaPolicyRow | None) -> SlaPolicyOut:
    if row is not None:
        return SlaPolicyOut(
            channel=channel,
            priority=priority.value,
            first_response_minutes=row.first_response_minutes,
            resolution_minutes=row.resolution_minutes,
            source="custom",
            updated_at=row.updated_at,
            updated_by=row.updated_by,
        )
    default = DEFAULT_TARGETS[priority]
    return SlaPolicyOut(
        channel=channel,
        priority=priority.value,
        first_response_minutes=int(default.first_response.total_seconds() // 60),
        resolution_minutes=int(default.resolution.total_seconds() // 60),
        source="default",
        updated_at=None,
        updated_by=None,
    )


async def list_policies(uow: UnitOfWork) -> list[SlaPolicyOut]:
    """Every channel × priority with the targets in force."""
    async with uow:
        rows = {(r.channel, r.priority): r for r in await uow.session.scalars(select(SlaPolicyRow))}
    return [
        _policy_out(channel.value, priority, rows.get((channel.value, priority.value)))
        for channel in Channel
        for priority in Priority
    ]


async def set_policy(
    uow: UnitOfWork, channel: Channel, priority: Priority, data: SlaPolicyIn
) -> SlaPolicyOut:
    """Set the targets of one channel and priority. Complaints opened from now on get them; those
    already open keep the due dates they were promised."""
    if data.resolution_minutes < data.first_response_minutes:
        raise InvalidInput(
            "body.resolution_minutes",
            f"cannot be shorter than first_response_minutes ({data.first_response_minutes})",
        )
    now = datetime.now(UTC)
    async with uow:
        row = await uow.session.get(SlaPolicyRow, (channel.value, priority.value))
        if row is None:
            row = SlaPolicyRow(channel=channel.value, priority=priority.value)
            uow.session.add(row)
        row.first_response_minutes = data.first_response_minutes
        row.resolution_minutes = data.resolution_minutes
        row.updated_at = now
        row.updated_by = data.updated_by
        await uow.commit()
    return _policy_out(channel.value, priority, row)


# --- the SLA watch ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Watch:
    target: SlaTarget
    due: Any  # the due column
    answered_at: Any  # the column whose stamp ends the clock
    breached: Any  # the flag claimed by the update
    settled: Callable[[], Any]  # extra condition: the clock still runs


WATCHES: dict[SlaTarget, _Watch] = {
    SlaTarget.FIRST_RESPONSE: _Watch(
        SlaTarget.FIRST_RESPONSE,
        COMPLAINTS.c.first_response_due,
        COMPLAINTS.c.first_response_at,
        COMPLAINTS.c.first_response_breached,
        lambda: COMPLAINTS.c.status != ComplaintStatus.CLOSED.value,
    ),
    SlaTarget.RESOLUTION: _Watch(
        SlaTarget.RESOLUTION,
        COMPLAINTS.c.resolution_due,
        COMPLAINTS.c.resolved_at,
        COMPLAINTS.c.resolution_breached,
        lambda: COMPLAINTS.c.status.not_in([s.value for s in SETTLED]),
    ),
}


def _overdue(watch: _Watch, now: datetime) -> list[Any]:
    return [watch.breached == false(), watch.answered_at.is_(None), watch.due < now, watch.settled()]


async def scan(uow_factory: Callable[[], UnitOfWork], *, now: datetime | None = None) -> list[EscalationOut]:
    """Escalate every complaint past a due date not yet breached for that target: mark it breached,
    raise its escalation level, append an `escalated` history row and publish
    `complaint_sla_breached` — all in the transaction whose UPDATE claimed the breach."""
    now = now or datetime.now(UTC)
    escalated: list[EscalationOut] = []
    for watch in WATCHES.values():
        after = ""
        while True:
            async with uow_factory() as uow:
                ids = list(
                    await uow.session.scalars(
                        select(COMPLAINTS.c.id)
                        .where(*_overdue(watch, now), COMPLAINTS.c.id > after)
                        .order_by(COMPLAINTS.c.id)  # one lock order for every replica: no deadlock
                        .limit(SCAN_BATCH)
                    )
                )
                if not ids:
                    break
                for complaint_id in ids:
                    found = await claim(uow, watch.target, complaint_id, now)
                    if found is not None:
                        escalated.append(found)
                await uow.commit()
            after = ids[-1]
            if len(ids) < SCAN_BATCH:
                break
    return escalated


async def claim(uow: UnitOfWork, target: SlaTarget, complaint_id: str, now: datetime) -> EscalationOut | None:
    """Escalate one complaint for one target if it is still overdue and unclaimed (None otherwise),
    within the caller's transaction: the UPDATE is the claim, so of two replicas racing for the same
    breach only one gets a row back (the other waits for its lock, then finds the flag set)."""
    watch = WATCHES[target]
    c = COMPLAINTS.c
    claimed = (
        await uow.session.execute(
            update(COMPLAINTS)
            .where(c.id == complaint_id, *_overdue(watch, now))
            .values(
                {
                    watch.breached: True,
                    c.escalation_level: c.escalation_level + 1,
                    c.last_seq: c.last_seq + 1,
                    c.version: c.version + 1,
                    c.updated_at: now,
                }
            )
            .returning(
                c.customer_id,
                c.origin_customer_id,
                c.channel,
                c.priority,
                c.category,
                c.status,
                c.owner_id,
                c.first_response_at,
                c.escalation_level,
                c.last_seq,
                watch.due,
            )
        )
    ).first()
    if claimed is None:
        return None  # another run got there first, or the complaint was answered meanwhile
    row = claimed._mapping
    due_at: datetime = row[watch.due.name]
    uow.session.add(
        ComplaintEventRow(
            id=str(uuid.uuid4()),
            complaint_id=complaint_id,
            seq=row["last_seq"],
            customer_id=row["customer_id"],
            origin_customer_id=row["origin_customer_id"],
            kind=EventKind.ESCALATED.value,
            occurred_at=now,
            actor_id=None,
            from_status=None,
            to_status=None,
            direction=None,
            channel=None,
            text=None,
            details={
                "target": watch.target.value,
                "due_at": due_at.isoformat(),
                "escalation_level": row["escalation_level"],
            },
        )
    )
    await uow.publish(
        ComplaintSlaBreached(
            complaint_id=complaint_id,
            customer_id=row["customer_id"],
            target=watch.target.value,
            due_at=due_at,
            detected_at=now,
            priority=row["priority"],
            channel=row["channel"],
            answered=row["first_response_at"] is not None,
            category=row["category"],
            status=row["status"],
            owner_id=row["owner_id"],
            escalation_level=row["escalation_level"],
        )
    )
    return EscalationOut(
        complaint_id=complaint_id,
        customer_id=row["customer_id"],
        target=watch.target.value,
        due_at=due_at,
        escalation_level=row["escalation_level"],
    )


# --- the compliance report -------------------------------------------------------------------------


def _pct(hits: int, decided: int) -> float | None:
    return round(100 * hits / decided, 1) if decided else None


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


@dataclass
class _Tally:
    opened: int = 0
    answered: int = 0
    answered_in_time: int = 0
    answer_decided: int = 0
    resolved: int = 0
    resolved_in_time: int = 0
    resolution_decided: int = 0
    open_overdue_now: int = 0
    first_response_minutes: list[float] = field(default_factory=list)
    resolution_minutes: list[float] = field(default_factory=list)

    def add(self, row: Any, now: datetime) -> None:
        self.opened += 1
        if row.first_response_at is not None:
            self.answered += 1
            self.first_response_minutes.append(_minutes(row.first_response_at - row.opened_at))
            self.answered_in_time += row.first_response_at <= row.first_response_due
        if row.first_response_at is not None or row.first_response_due < now:
            self.answer_decided += 1
        if row.resolved_at is not None:
            self.resolved += 1
            self.resolution_minutes.append(_minutes(row.resolved_at - row.opened_at))
            self.resolved_in_time += row.resolved_at <= row.resolution_due
        if row.resolved_at is not None or row.resolution_due < now:
            self.resolution_decided += 1

    def row(self, channel: str, priority: str) -> SlaReportRow:
        return SlaReportRow(
            channel=channel,
            priority=priority,
            opened=self.opened,
            answered=self.answered,
            answered_within_target_pct=_pct(self.answered_in_time, self.answer_decided),
            resolved=self.resolved,
            resolved_within_target_pct=_pct(self.resolved_in_time, self.resolution_decided),
            median_first_response_minutes=_median(self.first_response_minutes),
            median_resolution_minutes=_median(self.resolution_minutes),
            open_overdue_now=self.open_overdue_now,
        )


def _merge(tallies: Iterable[_Tally]) -> _Tally:
    total = _Tally()
    for t in tallies:
        for name in (
            "opened",
            "answered",
            "answered_in_time",
            "answer_decided",
            "resolved",
            "resolved_in_time",
            "resolution_decided",
            "open_overdue_now",
        ):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.first_response_minutes.extend(t.first_response_minutes)
        total.resolution_minutes.extend(t.resolution_minutes)
    return total


def report_window(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The window of opening times the report covers (default: the last 30 days)."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
    until = until or now
    since = since or until - timedelta(days=30)
    if since >= until:
        raise InvalidInput("query.since", "must be before until")
    if until - since > MAX_REPORT_WINDOW:
        raise InvalidInput("query.since", "the window is at most 366 days")
    return since, until


async def report(uow: UnitOfWork, since: datetime | None, until: datetime | None) -> SlaReport:
    """SLA compliance per channel and priority of the complaints opened in [since, until): how many were
    answered and resolved within their targets, median times, and how many are overdue right now.

    "Within target" is counted among the complaints whose target is decided — answered (resolved)
    already, or past the due time — so young complaints do not flatter the figure. A reopened
    complaint counts as resolved only once resolved again, against its original due date."""
    now = datetime.now(UTC)
    since, until = report_window(since, until, now)
    c = COMPLAINTS.c
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    async with uow:
        rows = await uow.session.stream(
            select(
                c.channel,
                c.priority,
                c.opened_at,
                c.first_response_at,
                c.first_response_due,
                c.resolved_at,
                c.resolution_due,
            ).where(c.opened_at >= since, c.opened_at < until)
        )
        async for row in rows:
            tallies[(row.channel, row.priority)].add(row, now)
        overdue = await uow.session.execute(
            select(c.channel, c.priority, func.count())
            .where(c.next_due_at < now, c.status != ComplaintStatus.CLOSED.value)
            .group_by(c.channel, c.priority)
        )
        for channel, priority, count in overdue:
            tallies[(channel, priority)].open_overdue_now += int(count)
    ordered = sorted(
        tallies.items(), key=lambda item: (item[0][0], list(Priority).index(Priority(item[0][1])))
    )
    return SlaReport(
        since=since,
        until=until,
        generated_at=now,
        rows=[tally.row(channel, priority) for (channel, priority), tally in ordered],
        total=_merge(tallies.values()).row("all", "all"),
    )

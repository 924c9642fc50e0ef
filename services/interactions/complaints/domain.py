"""Complaint rules, free of I/O: the lifecycle (which status may follow which), what a change stamps,
the service-level targets and the due dates they give.

Lifecycle (see `TRANSITIONS`): opened → acknowledged → in_progress → resolved → closed, with
shortcuts forward (opened → resolved on first contact, opened → in_progress); closed only with the
customer's agreement; resolved or closed → reopened → acknowledged / in_progress / resolved.

First response is the first sign to the customer that someone owns the complaint: an
acknowledgement, an outbound message, or the resolution itself when nothing came before.

SLA clocks run on calendar time from `opened_at`. A reopen keeps both due dates: the promise was a
definitive resolution by `resolution_due`, and a resolution that did not hold did not keep it (a
complaint reopened after its due date is escalated by the next SLA scan).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.errors import Conflict, FieldError, InvalidInput


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ComplaintStatus(StrEnum):
    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


class SlaTarget(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class EventKind(StrEnum):
    """What a row of a complaint's history records."""

    OPENED = "opened"
    STATUS_CHANGED = "status_changed"
    ASSIGNED = "assigned"
    MESSAGE = "message"
    ESCALATED = "escalated"


S = ComplaintStatus
TRANSITIONS: dict[ComplaintStatus, frozenset[ComplaintStatus]] = {
    S.OPENED: frozenset({S.ACKNOWLEDGED, S.IN_PROGRESS, S.RESOLVED}),
    S.ACKNOWLEDGED: frozenset({S.IN_PROGRESS, S.RESOLVED}),
    S.IN_PROGRESS: frozenset({S.RESOLVED}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED}),
    S.CLOSED: frozenset({S.REOPENED}),
    S.REOPENED: frozenset({S.ACKNOWLEDGED, S.IN_PROGRESS, S.RESOLVED}),
}
# Statuses in which nothing is owed to the customer any more (no SLA clock runs).
SETTLED = frozenset({S.RESOLVED, S.CLOSED})


def allowed_next(current: ComplaintStatus) -> list[str]:
    """The statuses a complaint may move to from `current`, in lifecycle order."""
    return [s.value for s in ComplaintStatus if s in TRANSITIONS[current]]


def check_transition(current: ComplaintStatus, target: ComplaintStatus, *, customer_agreed: bool) -> None:
    """Refuse a change the lifecycle forbids (409 naming `body.status`, with the allowed next states)
    and a close the customer has not agreed to (422 naming `body.customer_agreed`)."""
    if target not in TRANSITIONS[current]:
        allowed = allowed_next(current)
        message = f"a {current.value} complaint cannot become {target.value}; allowed: {', '.join(allowed)}"
        raise Conflict(
            f"body.status: {message}",
            errors=[FieldError("body.status", message)],
            current_status=current.value,
            allowed_next=allowed,
        )
    if target is S.CLOSED and not customer_agreed:
        raise InvalidInput(
            "body.customer_agreed",
            "a complaint is closed only with the customer's agreement: send customer_agreed: true",
        )


@dataclass(frozen=True, slots=True)
class Stamps:
    """The lifecycle timestamps of a complaint."""

    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


def stamps_after(target: ComplaintStatus, at: datetime, before: Stamps) -> Stamps:
    """The timestamps once the complaint has moved to `target` at `at`. The first response is stamped
    once and never moved; a reopen clears the resolution and the closing (they did not hold)."""
    first_response = before.first_response_at
    if first_response is None and target in {S.ACKNOWLEDGED, S.RESOLVED}:
        first_response = at
    if target is S.RESOLVED:
        return Stamps(first_response, at, None)
    if target is S.CLOSED:
        return Stamps(first_response, before.resolved_at, at)
    if target is S.REOPENED:
        return Stamps(first_response, None, None)
    return Stamps(first_response, before.resolved_at, before.closed_at)


@dataclass(frozen=True, slots=True)
class Targets:
    """A service-level policy: how long until the first response, and until the resolution."""

    first_response: timedelta
    resolution: timedelta

    def __post_init__(self) -> None:
        if self.first_response <= timedelta(0):
            raise ValueError("the first-response target must be positive")
        if self.resolution < self.first_response:
            raise ValueError("the resolution target cannot be shorter than the first-response target")


DEFAULT_TARGETS: dict[Priority, Targets] = {
    Priority.URGENT: Targets(timedelta(hours=1), timedelta(hours=24)),
    Priority.HIGH: Targets(timedelta(hours=4), timedelta(hours=72)),
    Priority.NORMAL: Targets(timedelta(hours=24), timedelta(days=7)),
    Priority.LOW: Targets(timedelta(hours=72), timedelta(days=14)),
}


@dataclass(frozen=True, slots=True)
class DueDates:
    first_response_due: datetime
    resolution_due: datetime


def due_dates(opened_at: datetime, targets: Targets) -> DueDates:
    """When the first response and the resolution are due for a complaint opened at `opened_at`."""
    return DueDates(opened_at + targets.first_response, opened_at + targets.resolution)


def next_due(status: ComplaintStatus, first_response_at: datetime | None, dues: DueDates) -> datetime | None:
    """The deadline the complaint is racing now (the queue is ordered by it): the first response while
    there has been none, then the resolution; none once resolved or closed."""
    if status in SETTLED:
        return None
    if first_response_at is None:
        return min(dues.first_response_due, dues.resolution_due)
    return dues.resolution_due


def is_overdue(next_due_at: datetime | None, now: datetime) -> bool:
    return next_due_at is not None and next_due_at < now

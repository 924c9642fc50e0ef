"""Complaint rules without I/O: the lifecycle, what each change stamps, the SLA due dates and the
deadline the queue is ordered by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.interactions.complaints.domain import (
    DEFAULT_TARGETS,
    TRANSITIONS,
    ComplaintStatus,
    DueDates,
    Priority,
    Stamps,
    Targets,
    allowed_next,
    check_transition,
    due_dates,
    is_overdue,
    next_due,
    stamps_after,
)
from shared.errors import Conflict, InvalidInput

S = ComplaintStatus
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NONE = Stamps(None, None, None)

ALLOWED = [
    (S.OPENED, S.ACKNOWLEDGED),
    (S.OPENED, S.IN_PROGRESS),
    (S.OPENED, S.RESOLVED),
    (S.ACKNOWLEDGED, S.IN_PROGRESS),
    (S.ACKNOWLEDGED, S.RESOLVED),
    (S.IN_PROGRESS, S.RESOLVED),
    (S.RESOLVED, S.CLOSED),
    (S.RESOLVED, S.REOPENED),
    (S.CLOSED, S.REOPENED),
    (S.REOPENED, S.ACKNOWLEDGED),
    (S.REOPENED, S.IN_PROGRESS),
    (S.REOPENED, S.RESOLVED),
]


class TestTransitions:
    def test_the_table_is_exactly_the_documented_lifecycle(self) -> None:
        table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
        assert table == set(ALLOWED)

    @pytest.mark.parametrize(("current", "target"), ALLOWED)
    def test_allowed_changes_pass(self, current: ComplaintStatus, target: ComplaintStatus) -> None:
        check_transition(current, target, customer_agreed=True)

    @pytest.mark.parametrize(
        ("current", "target"),
        [(a, b) for a in S for b in S if (a, b) not in ALLOWED],
    )
    def test_every_other_change_is_a_conflict_naming_the_status(
        self, current: ComplaintStatus, target: ComplaintStatus
    ) -> None:
        with pytest.raises(Conflict) as caught:
            check_transition(current, target, customer_agreed=True)
        assert [e.field for e in caught.value.errors] == ["body.status"]
        assert caught.value.extensions["allowed_next"] == allowed_next(current)
        assert caught.value.extensions["current_status"] == current.value

    def test_closing_without_the_customers_agreement_is_refused(self) -> None:
        with pytest.raises(InvalidInput) as caught:
            check_transition(S.RESOLVED, S.CLOSED, customer_agreed=False)
        assert [e.field for e in caught.value.errors] == ["body.customer_agreed"]

    def test_a_forbidden_close_is_a_conflict_even_with_agreement(self) -> None:
        with pytest.raises(Conflict):
            check_transition(S.IN_PROGRESS, S.CLOSED, customer_agreed=True)

    def test_allowed_next_follows_lifecycle_order(self) -> None:
        assert allowed_next(S.OPENED) == ["acknowledged", "in_progress", "resolved"]
        assert allowed_next(S.RESOLVED) == ["closed", "reopened"]
        assert allowed_next(S.CLOSED) == ["reopened"]


class TestStamps:
    def test_acknowledging_is_the_first_response(self) -> None:
        assert stamps_after(S.ACKNOWLEDGED, T0, NONE) == Stamps(T0, None, None)

    def test_the_first_response_is_never_moved(self) -> None:
        later = T0 + timedelta(hours=5)
        assert stamps_after(S.ACKNOWLEDGED, later, Stamps(T0, None, None)).first_response_at == T0
        assert stamps_after(S.RESOLVED, later, Stamps(T0, None, None)) == Stamps(T0, later, None)

    def test_moving_to_in_progress_is_not_a_response(self) -> None:
        assert stamps_after(S.IN_PROGRESS, T0, NONE) == NONE

    def test_a_resolution_with_nothing_before_answers_the_customer(self) -> None:
        assert stamps_after(S.RESOLVED, T0, NONE) == Stamps(T0, T0, None)

    def test_closing_keeps_the_resolution(self) -> None:
        resolved = Stamps(T0, T0 + timedelta(hours=1), None)
        closed_at = T0 + timedelta(days=1)
        assert stamps_after(S.CLOSED, closed_at, resolved) == Stamps(T0, resolved.resolved_at, closed_at)

    def test_reopening_clears_the_resolution_and_the_closing(self) -> None:
        closed = Stamps(T0, T0 + timedelta(hours=1), T0 + timedelta(days=1))
        assert stamps_after(S.REOPENED, T0 + timedelta(days=2), closed) == Stamps(T0, None, None)


class TestDueDates:
    @pytest.mark.parametrize(
        ("priority", "first", "resolution"),
        [
            (Priority.URGENT, timedelta(hours=1), timedelta(hours=24)),
            (Priority.HIGH, timedelta(hours=4), timedelta(hours=72)),
            (Priority.NORMAL, timedelta(hours=24), timedelta(days=7)),
            (Priority.LOW, timedelta(hours=72), timedelta(days=14)),
        ],
    )
    def test_defaults_per_priority(self, priority: Priority, first: timedelta, resolution: timedelta) -> None:
        assert due_dates(T0, DEFAULT_TARGETS[priority]) == DueDates(T0 + first, T0 + resolution)

    def test_a_custom_policy(self) -> None:
        dues = due_dates(T0, Targets(timedelta(minutes=90), timedelta(hours=8)))
        assert dues == DueDates(
            datetime(2026, 11, 20, 11, 30, tzinfo=UTC), datetime(2026, 11, 20, 18, tzinfo=UTC)
        )

    def test_due_dates_run_on_calendar_time_across_month_ends(self) -> None:
        opened = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
        assert due_dates(opened, DEFAULT_TARGETS[Priority.NORMAL]).resolution_due == datetime(
            2026, 2, 7, 23, 30, tzinfo=UTC
        )

    def test_a_policy_cannot_resolve_before_it_answers(self) -> None:
        with pytest.raises(ValueError, match="shorter"):
            Targets(timedelta(hours=4), timedelta(hours=1))
        with pytest.raises(ValueError, match="positive"):
            Targets(timedelta(0), timedelta(hours=1))


class TestNextDue:
    DUES = DueDates(T0 + timedelta(hours=1), T0 + timedelta(hours=24))

    def test_unanswered_races_the_first_response(self) -> None:
        assert next_due(S.OPENED, None, self.DUES) == self.DUES.first_response_due
        assert next_due(S.IN_PROGRESS, None, self.DUES) == self.DUES.first_response_due

    def test_answered_races_the_resolution(self) -> None:
        assert next_due(S.ACKNOWLEDGED, T0, self.DUES) == self.DUES.resolution_due

    def test_settled_races_nothing(self) -> None:
        assert next_due(S.RESOLVED, T0, self.DUES) is None
        assert next_due(S.CLOSED, T0, self.DUES) is None

    def test_a_reopened_complaint_keeps_its_original_resolution_due(self) -> None:
        assert next_due(S.REOPENED, T0, self.DUES) == self.DUES.resolution_due

    def test_overdue_is_strictly_past_the_due_time(self) -> None:
        due = self.DUES.first_response_due
        assert is_overdue(due, due + timedelta(seconds=1))
        assert not is_overdue(due, due)
        assert not is_overdue(None, due)

"""A golden record's current consents: the most recent choice among all its customer ids wins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest

from services.identity.consents.domain import (
    Channel,
    Purpose,
    as_status,
    current_consents,
    current_preferences,
    in_quiet_hours,
    may_contact_now,
    status_changed,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Choice:
    customer_id: str
    channel: str
    purpose: str
    status: str
    changed_at: datetime


@dataclass(frozen=True)
class Preferences:
    customer_id: str
    do_not_contact: bool
    updated_at: datetime


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


EMAIL_MARKETING = (Channel.EMAIL, Purpose.MARKETING)


class TestCurrentConsents:
    def test_nothing_recorded_means_no_consent(self) -> None:
        assert current_consents([]) == {}

    def test_one_customer_one_choice(self) -> None:
        choice = Choice("a", "email", "marketing", "granted", at(0))
        assert current_consents([choice]) == {("email", "marketing"): choice}

    def test_the_most_recent_choice_among_the_ids_wins(self) -> None:
        survivor = Choice("survivor", "email", "marketing", "granted", at(0))
        absorbed = Choice("absorbed", "email", "marketing", "withdrawn", at(5))
        assert current_consents([survivor, absorbed])[EMAIL_MARKETING] is absorbed
        assert current_consents([absorbed, survivor])[EMAIL_MARKETING] is absorbed

    def test_a_later_grant_on_another_id_overrides_a_withdrawal(self) -> None:
        withdrawn = Choice("survivor", "email", "marketing", "withdrawn", at(0))
        granted = Choice("absorbed", "email", "marketing", "granted", at(1))
        assert current_consents([withdrawn, granted])[EMAIL_MARKETING].status == "granted"

    @pytest.mark.parametrize(
        ("first", "second", "expected"),
        [
            ("granted", "withdrawn", "withdrawn"),
            ("withdrawn", "granted", "withdrawn"),
            ("granted", "denied", "denied"),
            ("denied", "withdrawn", "withdrawn"),
        ],
    )
    def test_on_a_tie_the_more_restrictive_status_wins(self, first: str, second: str, expected: str) -> None:
        rows = [
            Choice("a", "sms", "surveys", first, at(3)),
            Choice("b", "sms", "surveys", second, at(3)),
        ]
        assert current_consents(rows)[(Channel.SMS, Purpose.SURVEYS)].status == expected

    def test_each_channel_and_purpose_is_resolved_on_its_own(self) -> None:
        rows = [
            Choice("a", "email", "marketing", "granted", at(9)),
            Choice("b", "email", "marketing", "denied", at(1)),
            Choice("b", "sms", "marketing", "granted", at(2)),
            Choice("a", "email", "profiling", "withdrawn", at(0)),
        ]
        current = current_consents(rows)
        assert {key: c.status for key, c in current.items()} == {
            ("email", "marketing"): "granted",
            ("sms", "marketing"): "granted",
            ("email", "profiling"): "withdrawn",
        }


class TestCurrentPreferences:
    def test_none_stated(self) -> None:
        assert current_preferences([]) is None

    def test_the_most_recently_updated_applies(self) -> None:
        old = Preferences("a", True, at(0))
        new = Preferences("b", False, at(1))
        assert current_preferences([old, new]) is new

    def test_on_a_tie_do_not_contact_wins(self) -> None:
        quiet = Preferences("a", True, at(0))
        open_ = Preferences("b", False, at(0))
        assert current_preferences([open_, quiet]) is quiet
        assert current_preferences([quiet, open_]) is quiet


class TestStatusChanges:
    def test_a_first_choice_is_a_change_even_a_withdrawal(self) -> None:
        assert status_changed(None, "withdrawn")

    def test_the_same_status_again_is_not(self) -> None:
        assert not status_changed("granted", "granted")

    def test_a_different_status_is(self) -> None:
        assert status_changed("granted", "withdrawn")

    def test_stored_statuses_are_checked(self) -> None:
        assert as_status("denied") == "denied"
        with pytest.raises(ValueError, match="not a consent status"):
            as_status("maybe")


class TestMayContact:
    def test_only_with_a_current_grant(self) -> None:
        assert may_contact_now(do_not_contact=False, consent_status="granted")
        assert not may_contact_now(do_not_contact=False, consent_status=None)
        assert not may_contact_now(do_not_contact=False, consent_status="withdrawn")
        assert not may_contact_now(do_not_contact=False, consent_status="denied")

    def test_do_not_contact_overrides_a_grant(self) -> None:
        assert not may_contact_now(do_not_contact=True, consent_status="granted")

    def test_quiet_hours_count_only_when_a_time_is_given(self) -> None:
        quiet = (time(21, 0), time(9, 0), "Europe/Madrid")
        late_in_madrid = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)  # 23:30 in Madrid
        noon_in_madrid = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)  # 12:00 in Madrid
        assert may_contact_now(do_not_contact=False, consent_status="granted", quiet_hours=quiet)
        assert not may_contact_now(
            do_not_contact=False, consent_status="granted", quiet_hours=quiet, at=late_in_madrid
        )
        assert may_contact_now(
            do_not_contact=False, consent_status="granted", quiet_hours=quiet, at=noon_in_madrid
        )


class TestQuietHours:
    @pytest.mark.parametrize(
        ("local", "quiet"),
        [
            (time(20, 59), False),
            (time(21, 0), True),
            (time(3, 0), True),
            (time(8, 59), True),
            (time(9, 0), False),
        ],
    )
    def test_spanning_midnight(self, local: time, quiet: bool) -> None:
        moment = datetime.combine(datetime(2026, 6, 1).date(), local, tzinfo=UTC)
        assert in_quiet_hours(time(21, 0), time(9, 0), "UTC", moment) is quiet

    @pytest.mark.parametrize(("hour", "quiet"), [(12, False), (13, True), (14, True), (15, False)])
    def test_within_a_day(self, hour: int, quiet: bool) -> None:
        moment = datetime(2026, 6, 1, hour, 0, tzinfo=UTC)
        assert in_quiet_hours(time(13, 0), time(15, 0), "UTC", moment) is quiet

    def test_in_the_customers_time_zone(self) -> None:
        # 07:30 UTC is 09:30 in Madrid in summer: quiet in UTC, no longer in Madrid.
        moment = datetime(2026, 6, 1, 7, 30, tzinfo=UTC)
        assert in_quiet_hours(time(21, 0), time(8, 0), "UTC", moment)
        assert not in_quiet_hours(time(21, 0), time(8, 0), "Europe/Madrid", moment)

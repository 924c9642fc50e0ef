"""Household membership rules: each person once, at most one head; refusals name the member."""

from __future__ import annotations

import pytest

from services.identity.households.domain import HouseholdRole, check_new_members
from shared.errors import InvalidInput

HEAD, PARTNER, CHILD = HouseholdRole.HEAD, HouseholdRole.PARTNER, HouseholdRole.CHILD


def test_a_family() -> None:
    check_new_members([("a", HEAD), ("b", PARTNER), ("c", CHILD), ("d", CHILD)])


def test_no_head_is_fine() -> None:
    check_new_members([("a", CHILD), ("b", PARTNER)])


def test_a_person_listed_twice() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_new_members([("a", HEAD), ("b", CHILD), ("a", PARTNER)])
    assert [e.field for e in caught.value.errors] == ["body.members.2.customer_id"]


def test_two_heads() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_new_members([("a", HEAD), ("b", HEAD)])
    assert [e.field for e in caught.value.errors] == ["body.members.1.role"]


def test_a_head_when_the_household_has_one() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_new_members([("c", CHILD), ("d", HEAD)], has_head=True)
    assert [e.field for e in caught.value.errors] == ["body.members.1.role"]

"""Household rules, free of I/O."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from shared.errors import InvalidInput


class HouseholdRole(StrEnum):
    HEAD = "head"
    PARTNER = "partner"
    CHILD = "child"
    OTHER = "other"


def check_new_members(
    members: Sequence[tuple[str, HouseholdRole]], *, has_head: bool = False, field: str = "body.members"
) -> None:
    """Each person listed once, and at most one head in the household (counting one already there).
    Raises `InvalidInput` naming the member at fault (`body.members.<i>.customer_id` / `.role`)."""
    seen: set[str] = set()
    heads = 1 if has_head else 0
    for index, (customer_id, role) in enumerate(members):
        if customer_id in seen:
            raise InvalidInput(f"{field}.{index}.customer_id", f"customer {customer_id} is listed twice")
        seen.add(customer_id)
        if role is HouseholdRole.HEAD:
            heads += 1
            if heads > 1:
                raise InvalidInput(f"{field}.{index}.role", "a household has at most one head")

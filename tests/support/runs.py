"""Helpers for tests that compare a service handling events one by one with the same service handling
them as runs (its consumer's batch handlers): deliveries in fresh envelopes, and a pair of empty
databases on SQLite or on PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from shared.contracts.identity import CustomerMerged
from shared.events.envelope import EventPayload, new_event
from shared.messaging.consumer import Delivery


def delivery(payload: EventPayload) -> Delivery:
    """The payload as the bus would deliver it, in a fresh envelope (a new event id)."""
    return Delivery(event=new_event(payload, source="/tests/runs"), topic=payload.topic.name)


def merge(survivor: str, absorbed: str, merge_id: str, at: datetime) -> Delivery:
    """Identity's announcement that `absorbed` is now `survivor`, delivered."""
    return delivery(
        CustomerMerged(
            customer_id=survivor, merged_id=absorbed, merge_id=merge_id, method="deterministic", merged_at=at
        )
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two empty databases of one kind: SQLite files, or two fresh PostgreSQL databases."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    return request.getfixturevalue("pg_database"), request.getfixturevalue("pg_database_2")

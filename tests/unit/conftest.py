"""Unit-test fixtures: a producer and a consumer side on SQLite files (no servers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.events.envelope import EventPayload
from tests.support.testbed import Side, make_event_class, make_side


@pytest.fixture
def note_class() -> type[EventPayload]:
    return make_event_class(uuid.uuid4().hex[:12])


@pytest.fixture
async def producer(tmp_path: Path) -> AsyncIterator[Side]:
    side = make_side(f"sqlite+aiosqlite:///{tmp_path / 'producer.db'}", "/crm/test-producer")
    await side.create_all()
    yield side
    await side.engine.dispose()


@pytest.fixture
async def consumer_side(tmp_path: Path) -> AsyncIterator[Side]:
    side = make_side(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}", "/crm/test-consumer")
    await side.create_all()
    yield side
    await side.engine.dispose()

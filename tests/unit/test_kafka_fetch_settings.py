"""The consumers' fetch wait (`kafka_fetch_max_wait_ms`, `kafka_fetch_min_bytes`) goes from the settings
(environment included) through `make_bus` to every Kafka consumer the bus starts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.loyalty.settings import LoyaltySettings, load_settings
from shared.messaging import kafka
from shared.messaging.factory import make_bus
from shared.messaging.kafka import KafkaBus
from shared.settings import BusBackend


class _Stop(Exception):
    pass


class _RecordingConsumer:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.made.append(kwargs)

    def subscribe(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        raise _Stop

    async def stop(self) -> None:
        pass


class _Consumer:
    group = "g"
    topics = ("t",)


def test_defaults_wait_a_little_for_a_batch() -> None:
    settings = LoyaltySettings(bus=BusBackend.KAFKA)  # type: ignore[arg-type]
    assert settings.kafka_fetch_max_wait_ms == 100
    assert settings.kafka_fetch_min_bytes == 65_536


def test_environment_reaches_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_FETCH_MAX_WAIT_MS", "5")
    monkeypatch.setenv("CRM_LOYALTY_KAFKA_FETCH_MIN_BYTES", "1")
    bus = make_bus(load_settings(bus=BusBackend.KAFKA), consumer_batch_size=7)
    assert isinstance(bus, KafkaBus)
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", _RecordingConsumer)
    _RecordingConsumer.made.clear()
    with pytest.raises(_Stop):
        asyncio.run(bus._consume(_Consumer()))  # type: ignore[arg-type]
    (made,) = _RecordingConsumer.made
    assert made["fetch_max_wait_ms"] == 5
    assert made["fetch_min_bytes"] == 1
    assert made["max_poll_records"] == 7
    assert made["enable_auto_commit"] is False


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError, match="kafka_fetch_max_wait_ms"):
        LoyaltySettings(kafka_fetch_max_wait_ms=-1)

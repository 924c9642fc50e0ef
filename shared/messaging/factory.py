"""Choose the bus backend from settings: in-process (embedded) or Kafka (distributed)."""

from __future__ import annotations

from shared.messaging.bus import EventBus, InProcessBus
from shared.settings import BusBackend, PlatformSettings


def make_bus(
    settings: PlatformSettings, *, client_id: str = "crm", consumer_batch_size: int = 500
) -> EventBus:
    if settings.bus is BusBackend.KAFKA:
        from shared.messaging.kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap_servers,
            client_id=client_id,
            default_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            consumer_batch_size=consumer_batch_size,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            fetch_min_bytes=settings.kafka_fetch_min_bytes,
        )
    return InProcessBus()

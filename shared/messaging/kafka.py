"""The Kafka backend of the event bus (distributed mode), on aiokafka.

Publishing: an idempotent producer (`enable_idempotence`, `acks=all`), CloudEvents binary binding,
record key = customer id. `publish` returns after every record is acknowledged.

Consuming: one aiokafka consumer per subscribed consumer group, auto-commit off. Everything one poll
returned, from all the group's partitions (each partition's records in order, one partition after
the other), goes through `EventConsumer.handle_batch` as one batch (one transaction with the inbox
rows; set-based handlers see the longest runs); dead letters are produced to the group's dead-letter
topic `crm.dlq.<group>` and acknowledged; only then are the partitions' offsets committed, in one
request. Transient failures are retried with backoff without committing, so a
database outage pauses consumption instead of losing or dead-lettering anything. A rebalance
listener waits for the batch in flight, so partitions are handed over only after their offsets are
committed.

Dead letters carry the original record's headers plus `dlq_*` headers (origin topic, partition,
offset, consumer group, error). `crm dlq list` reads what a replayer group has not consumed yet;
`crm dlq replay` republishes those records to their original topic — every other group's inbox
drops them as duplicates — and commits the replayer's offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.events.envelope import registered_topics
from shared.events.kafka_binding import MalformedEvent, from_kafka, to_kafka
from shared.logging import get_logger
from shared.messaging.bus import EventBus, OutboundMessage, StoredDeadLetter
from shared.messaging.consumer import DeadLetter, Delivery, EventConsumer, is_transient
from shared.metrics import CONSUMER_LAG, DEAD_LETTERS

log = get_logger(__name__)

DLQ_PREFIX = "crm.dlq."
REPLAYER_SUFFIX = ".dlq-replayer"


def dead_letter_topic(group: str) -> str:
    return DLQ_PREFIX + group


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hand partitions over only after the batch in flight is handled and its offset committed."""

    def __init__(self, lock: asyncio.Lock, group: str) -> None:
        self._lock = lock
        self._group = group

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            log.info(
                "partitions_revoked",
                group=self._group,
                partitions=[f"{p.topic}:{p.partition}" for p in revoked],
            )

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "partitions_assigned",
            group=self._group,
            partitions=[f"{p.topic}:{p.partition}" for p in assigned],
        )


class KafkaBus(EventBus):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "crm",
        default_partitions: int = 6,
        replication_factor: int = 1,
        consumer_batch_size: int = 500,
        fetch_max_wait_ms: int = 100,
        fetch_min_bytes: int = 65_536,
        start_timeout: float = 120.0,
    ) -> None:
        super().__init__()
        self.start_timeout = start_timeout
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.default_partitions = default_partitions
        self.replication_factor = replication_factor
        self.consumer_batch_size = consumer_batch_size
        # A fetch waits up to `fetch_max_wait_ms` for `fetch_min_bytes` of events (see the settings).
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, waiting for the broker (with backoff) up to `start_timeout` seconds: a service
        started while Kafka is restarting comes up when Kafka does instead of crash-looping."""
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.start_timeout),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type((KafkaError, OSError)),
            before_sleep=lambda state: log.warning(
                "kafka_unavailable_retrying", error=repr(state.outcome.exception() if state.outcome else None)
            ),
            reraise=True,
        ):
            with attempt:
                await self.ensure_topics()
                producer = self._new_producer()
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
        self._running = True
        for consumer in self.consumers:
            self._tasks.append(
                asyncio.create_task(self._consume_forever(consumer), name=f"kafka-{consumer.group}")
            )

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=15000,
        )

    async def ensure_topics(self) -> None:
        """Create every declared topic (explicit partitions) and each subscribed group's dead-letter topic."""
        wanted: dict[str, int] = {
            t.name: t.partitions or self.default_partitions for t in registered_topics().values()
        }
        for consumer in self.consumers:
            wanted[dead_letter_topic(consumer.group)] = 1
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-admin"
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, num_partitions=n, replication_factor=self.replication_factor)
                for name, n in sorted(wanted.items())
                if name not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                for topic, code, *_ in response.topic_errors:
                    if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (another service raced us)
                        raise KafkaError(f"could not create topic {topic}: error code {code}")
                log.info("topics_created", topics=[t.name for t in missing])
        finally:
            await admin.close()

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(2):
                await producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBus.publish before start()")
        futures = []
        for message in messages:
            key, value, headers = to_kafka(message.event)
            futures.append(await self._producer.send(message.topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)

    # -- consuming -----------------------------------------------------------------------------

    async def _consume_forever(self, consumer: EventConsumer) -> None:
        backoff = 0.5
        while self._running:
            try:
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer_restart", group=consumer.group, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def _consume(self, consumer: EventConsumer) -> None:
        lock = asyncio.Lock()
        kafka_consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self.client_id}-{consumer.group}",
            group_id=consumer.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.consumer_batch_size,
            max_poll_interval_ms=600_000,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            fetch_min_bytes=self.fetch_min_bytes,
        )
        kafka_consumer.subscribe(consumer.topics, listener=_WaitForBatch(lock, consumer.group))
        await kafka_consumer.start()
        try:
            while self._running:
                batches = await kafka_consumer.getmany(timeout_ms=500, max_records=self.consumer_batch_size)
                if any(batches.values()):
                    async with lock:
                        assigned = kafka_consumer.assignment()
                        # A partition revoked while we were busy: its new owner will handle it.
                        mine = {tp: records for tp, records in batches.items() if records and tp in assigned}
                        if mine:
                            await self._process(kafka_consumer, consumer, mine)
                await self._record_lag(kafka_consumer, consumer.group)
        finally:
            with contextlib.suppress(Exception):
                await kafka_consumer.stop()

    async def _process(
        self,
        kafka_consumer: AIOKafkaConsumer,
        consumer: EventConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        deliveries: list[Delivery] = []
        malformed: list[tuple[ConsumerRecord[Any, Any], str]] = []
        for record in (record for records in batches.values() for record in records):
            try:
                event = from_kafka(record.value, record.headers)
            except MalformedEvent as exc:
                malformed.append((record, str(exc)))
                continue
            deliveries.append(
                Delivery(event=event, topic=record.topic, partition=record.partition, offset=record.offset)
            )

        backoff = 0.2
        while True:
            try:
                dead = await consumer.handle_batch(deliveries)
                break
            except Exception as exc:
                if not is_transient(exc) or not self._running:
                    raise
                log.warning("consumer_transient_failure", group=consumer.group, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

        for letter in dead:
            await self._send_dead_letter(consumer.group, letter)
        for record, error in malformed:
            await self._send_raw_dead_letter(consumer.group, record, error)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await self._commit_offsets(kafka_consumer, offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Lost a partition in a rebalance: the new owner re-reads it and the inbox drops repeats.
            log.warning(
                "offset_commit_failed",
                group=consumer.group,
                partitions=sorted(map(str, offsets)),
                error=repr(exc),
            )

    async def _commit_offsets(
        self, kafka_consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        """Commit after the database transaction (and any dead letters) are durable: never before."""
        await kafka_consumer.commit(offsets)

    async def _record_lag(self, kafka_consumer: AIOKafkaConsumer, group: str) -> None:
        for tp in kafka_consumer.assignment():
            highwater = kafka_consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(IllegalStateError):
                position = await kafka_consumer.position(tp)
                CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(highwater - position, 0))

    async def _send_dead_letter(self, group: str, letter: DeadLetter) -> None:
        delivery = letter.delivery
        key, value, headers = to_kafka(delivery.event)
        headers += _dlq_headers(
            group, delivery.topic, delivery.partition, delivery.offset, letter.error_type, letter.error
        )
        await self._produce_dlq(group, key, value, headers)
        DEAD_LETTERS.labels(group, delivery.event.type).inc()

    async def _send_raw_dead_letter(self, group: str, record: ConsumerRecord[Any, Any], error: str) -> None:
        headers = list(record.headers) + _dlq_headers(
            group, record.topic, record.partition, record.offset, "MalformedEvent", error
        )
        await self._produce_dlq(group, record.key, record.value or b"", headers)
        DEAD_LETTERS.labels(group, "malformed").inc()

    async def _produce_dlq(
        self, group: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(dead_letter_topic(group), value=value, key=key, headers=headers)

    # -- dead letters --------------------------------------------------------------------------

    def _groups(self, group: str | None) -> list[str]:
        groups = [c.group for c in self.consumers]
        if group is not None:
            return [group]
        return groups

    async def _pending_dead_letters(
        self, group: str
    ) -> tuple[AIOKafkaConsumer, list[ConsumerRecord[Any, Any]]]:
        """Open the replayer consumer of a group's DLQ and read everything it has not committed.

        The caller stops the returned consumer (after committing, when it replayed)."""
        topic = dead_letter_topic(group)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=group + REPLAYER_SUFFIX,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            tps = [TopicPartition(topic, p) for p in await self._partitions(topic)]
            if not tps:
                return reader, []
            reader.assign(tps)
            end = await reader.end_offsets(tps)
            for tp in tps:
                committed = await reader.committed(tp)
                if committed is None:
                    await reader.seek_to_beginning(tp)
                else:
                    reader.seek(tp, committed)
            records: list[ConsumerRecord[Any, Any]] = []
            async with asyncio.timeout(30):
                while any([await reader.position(tp) < end[tp] for tp in tps]):
                    batch = await reader.getmany(timeout_ms=500)
                    for recs in batch.values():
                        records.extend(
                            r for r in recs if r.offset < end[TopicPartition(r.topic, r.partition)]
                        )
        except BaseException:
            await reader.stop()
            raise
        return reader, records

    async def _partitions(self, topic: str) -> list[int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-admin"
        )
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return sorted(
            p["partition"]
            for t in described
            if t["topic"] == topic and not t["error_code"]
            for p in t["partitions"]
        )

    async def dead_letters(
        self, group: str | None = None, *, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        out: list[StoredDeadLetter] = []
        for g in self._groups(group):
            reader, records = await self._pending_dead_letters(g)
            await reader.stop()
            out.extend(_stored(g, r) for r in records)
        return out

    async def replay(self, group: str | None = None, refs: Sequence[str] | None = None) -> int:
        if self._producer is None:
            self._producer = self._new_producer()
            await self._producer.start()
        replayed = 0
        for g in self._groups(group):
            reader, records = await self._pending_dead_letters(g)
            try:
                for record in records:
                    letter = _stored(g, record)
                    if refs is not None and letter.ref not in refs:
                        continue
                    original = [(k, v) for k, v in record.headers if not k.startswith("dlq_")]
                    await self._producer.send_and_wait(
                        letter.topic, value=record.value, key=record.key, headers=original
                    )
                    replayed += 1
                if records and refs is None:
                    last: dict[TopicPartition, int] = {}
                    for r in records:
                        last[TopicPartition(r.topic, r.partition)] = r.offset + 1
                    await reader.commit(last)
            finally:
                await reader.stop()
        return replayed


def _dlq_headers(
    group: str, topic: str, partition: int | None, offset: int | None, error_type: str, error: str
) -> list[tuple[str, bytes]]:
    return [
        ("dlq_original_topic", topic.encode()),
        ("dlq_original_partition", str(partition if partition is not None else -1).encode()),
        ("dlq_original_offset", str(offset if offset is not None else -1).encode()),
        ("dlq_consumer_group", group.encode()),
        ("dlq_error_type", error_type.encode()),
        ("dlq_error", error[:4000].encode()),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
    ]


def _stored(group: str, record: ConsumerRecord[Any, Any]) -> StoredDeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    try:
        envelope = from_kafka(record.value, record.headers).model_dump(mode="json")
    except MalformedEvent:
        envelope = {"raw": (record.value or b"").decode(errors="replace")}
    failed_at = headers.get("dlq_failed_at")
    return StoredDeadLetter(
        ref=f"{record.topic}:{record.partition}:{record.offset}",
        consumer_group=group,
        topic=headers.get("dlq_original_topic", ""),
        event_id=headers.get("ce_id", ""),
        event_type=headers.get("ce_type", ""),
        subject=headers.get("ce_subject"),
        error=f"{headers.get('dlq_error_type', '')}: {headers.get('dlq_error', '')}",
        failed_at=datetime.fromisoformat(failed_at) if failed_at else None,
        envelope=envelope,
    )


__all__ = ["KafkaBus", "dead_letter_topic"]

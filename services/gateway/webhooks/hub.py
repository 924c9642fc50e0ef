"""The webhook hub: the gateway's database, its event consumer, the subscriptions and the sender.

Events reach the gateway like any service: its consumer group (`crm-gateway-webhooks`) receives
every declared event type from the bus — the shared in-process bus in embedded mode, its own Kafka
consumer in distributed mode. For each event, in the consumer's transaction (the one that also
records the event in the inbox, so a redelivered event is skipped), one delivery row is written
per matching subscription; the unique (subscription, event) pair is a second guard.

The sender then POSTs each due delivery's CloudEvent (structured JSON) to the subscription's URL,
signed (see `signing`), and records every attempt. A 2xx answer settles it; anything else (or no
answer within `CRM_GATEWAY_WEBHOOK_TIMEOUT_SECONDS`) is retried after an exponentially growing
delay, up to `CRM_GATEWAY_WEBHOOK_MAX_ATTEMPTS` tries in all, then the delivery is `failed`.
Due deliveries are claimed by pushing their `next_attempt_at` past the send timeout (with
`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several gateway replicas never send the same one at once;
a replica that dies mid-send leaves the claim to expire and the delivery is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.gateway.settings import GatewaySettings
from services.gateway.webhooks import models
from services.gateway.webhooks.catalogue import event_types
from services.gateway.webhooks.models import DeliveryStatus, attempts, deliveries, subscriptions
from services.gateway.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
)
from services.gateway.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, new_secret, sign
from shared.db import create_engine, session_factory
from shared.errors import FieldError, InvalidInput, NotFound
from shared.events.envelope import CloudEvent, EventPayload
from shared.logging import get_logger
from shared.messaging.bus import EventBus
from shared.messaging.consumer import EventConsumer
from shared.migrations import upgrade
from shared.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
CONSUMER_GROUP = "crm-gateway-webhooks"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_url(url: str, *, allow_http_localhost: bool) -> None:
    """HTTPS only (plain HTTP to the local machine when allowed, for tests and local tools)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("body.url", "not an absolute URL")
    if parts.username or parts.password:
        raise InvalidInput("body.url", "credentials in the URL are not allowed; verify the signature instead")
    if parts.scheme == "https":
        if _is_private_ip(host) and not (allow_http_localhost and host in LOCAL_HOSTS):
            raise InvalidInput("body.url", "private, loopback and link-local addresses are not allowed")
        return
    if parts.scheme == "http" and allow_http_localhost and host in LOCAL_HOSTS:
        return
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        raise InvalidInput("body.url", "plain http is allowed for localhost only in development settings")
    raise InvalidInput("body.url", "the URL must use https")


def _is_private_ip(host: str) -> bool:
    """A literal IP that is not public (names resolving to private addresses are not caught here)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def check_event_types(types: Sequence[str]) -> list[str]:
    known = event_types()
    errors = [
        FieldError(f"body.event_types.{i}", f"unknown event type {t!r}; see /asyncapi.json for the catalogue")
        for i, t in enumerate(types)
        if t not in known
    ]
    if errors:
        raise InvalidInput(errors[0].field, errors[0].message) if len(errors) == 1 else _many(errors)
    return sorted(set(types))


def _many(errors: list[FieldError]) -> InvalidInput:
    exc = InvalidInput(errors[0].field, errors[0].message)
    exc.errors = errors
    exc.detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return exc


def _subscription_out(row: Any) -> SubscriptionOut:
    return SubscriptionOut(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        active=row.active,
        created_at=row.created_at,
    )


class WebhookHub:
    def __init__(
        self,
        settings: GatewaySettings,
        database_url: str,
        *,
        bus: EventBus,
        owns_bus: bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.engine = create_engine(database_url, pool_size=settings.db_pool_size)
        self.sessions = session_factory(self.engine)
        self.uow = UnitOfWorkFactory(self.sessions, models.MESSAGING, source="/crm/gateway")
        self.bus = bus
        self.owns_bus = owns_bus
        # Event types some live subscription wants (None until first read: every event is looked at).
        self._subscribed: frozenset[str] | None = None
        self._reads = 0
        # Called with every event the consumer reads, wanted by a subscription or not (the gateway's
        # customer 360 cache drops what each event may have changed).
        self.observers: list[Callable[[CloudEvent], None]] = []
        self.consumer = EventConsumer(
            CONSUMER_GROUP,
            self.uow,
            max_attempts=settings.consumer_max_attempts,
            service="gateway",
            wants=self._wants,
        )
        for payload_class in event_types().values():
            self.consumer.on(payload_class)(self._record)
        self.bus.subscribe(self.consumer)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            headers={"user-agent": "crm-webhooks/1"},
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    # --- life cycle -------------------------------------------------------------------------

    async def migrate(self) -> None:
        if self.settings.run_migrations:
            await upgrade(self.database_url, MIGRATIONS)

    async def start(self) -> None:
        """Start the bus (distributed mode) and the sender. Migrate first."""
        await self.read_subscribed_types()
        self._refresher = asyncio.create_task(self._refresh(), name="webhook-subscriptions")
        if self.owns_bus:
            await self.bus.start()
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        for task in (self._task, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._refresher = None
        if self.owns_bus:
            await self.bus.stop()
        await self._client.aclose()
        await self.engine.dispose()

    def wake(self) -> None:
        self._wake.set()

    # --- consuming --------------------------------------------------------------------------

    def _wants(self, event: CloudEvent) -> bool:
        """Most events interest no subscription: those skip the consumer's transaction altogether."""
        for observe in self.observers:
            observe(event)
        return self._subscribed is None or event.type in self._subscribed

    async def read_subscribed_types(self) -> None:
        """Re-read which event types live subscriptions want (at start, after each change made here,
        and every `webhook_subscriptions_refresh_seconds` for changes made by other replicas)."""
        self._reads += 1
        mine = self._reads
        async with self.uow() as uow:
            lists = (
                await uow.session.execute(
                    select(subscriptions.c.event_types).where(
                        subscriptions.c.deleted_at.is_(None), subscriptions.c.active.is_(True)
                    )
                )
            ).scalars()
            types = frozenset(t for event_types in lists for t in event_types)
        if mine == self._reads:  # a read started later has not already answered
            self._subscribed = types

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.webhook_subscriptions_refresh_seconds)
            try:
                await self.read_subscribed_types()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the last answer; a database hiccup must not stop this
                log.warning("webhook_subscriptions_refresh_failed", error=repr(exc))

    async def _record(self, uow: UnitOfWork, _payload: EventPayload, event: CloudEvent) -> None:
        """One pending delivery per live subscription to this event's type, in the consumer's transaction."""
        rows = (
            await uow.session.execute(
                select(subscriptions.c.id, subscriptions.c.event_types).where(
                    subscriptions.c.deleted_at.is_(None), subscriptions.c.active.is_(True)
                )
            )
        ).all()
        matching = [row.id for row in rows if event.type in row.event_types]
        if not matching:
            return
        now = datetime.now(UTC)
        values = [
            {
                "id": str(uuid.uuid4()),
                "subscription_id": subscription_id,
                "event_id": event.id,
                "event_type": event.type,
                "envelope": event.model_dump(mode="json"),
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for subscription_id in matching
        ]
        dialect = uow.session.bind.dialect.name if uow.session.bind is not None else "sqlite"
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await uow.session.execute(insert(deliveries).values(values).on_conflict_do_nothing())
        # The sender polls; this only shortens the wait (the rows are visible once the batch commits).
        asyncio.get_running_loop().call_later(0.05, self.wake)

    # --- subscriptions ----------------------------------------------------------------------

    async def create(self, body: SubscriptionIn) -> SubscriptionCreated:
        check_url(body.url, allow_http_localhost=self.settings.webhooks_allow_http_localhost)
        types = check_event_types(body.event_types)
        row = {
            "id": str(uuid.uuid4()),
            "url": body.url,
            "event_types": types,
            "secret": new_secret(),
            "description": body.description,
            "active": True,
            "created_at": datetime.now(UTC),
        }
        async with self.uow() as uow:
            await uow.session.execute(subscriptions.insert().values(row))
            await uow.commit()
        await self.read_subscribed_types()
        return SubscriptionCreated(**{k: v for k, v in row.items()})

    async def all(self) -> list[SubscriptionOut]:
        async with self.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(subscriptions)
                    .where(subscriptions.c.deleted_at.is_(None))
                    .order_by(subscriptions.c.created_at, subscriptions.c.id)
                )
            ).all()
        return [_subscription_out(r) for r in rows]

    async def get(self, subscription_id: str) -> SubscriptionOut:
        async with self.uow() as uow:
            row = (
                await uow.session.execute(
                    select(subscriptions).where(
                        subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no webhook subscription {subscription_id}", subscription_id=subscription_id)
        return _subscription_out(row)

    async def delete(self, subscription_id: str) -> None:
        """Stop delivering: the subscription is gone and its pending deliveries cancelled (the log stays)."""
        now = datetime.now(UTC)
        async with self.uow() as uow:
            result = await uow.session.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None))
                .values(deleted_at=now, active=False)
            )
            if getattr(result, "rowcount", 0) == 0:
                raise NotFound(f"no webhook subscription {subscription_id}", subscription_id=subscription_id)
            await uow.session.execute(
                update(deliveries)
                .where(
                    deliveries.c.subscription_id == subscription_id,
                    deliveries.c.status == DeliveryStatus.PENDING,
                )
                .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None)
            )
            await uow.commit()
        await self.read_subscribed_types()

    async def deliveries(
        self, subscription_id: str, *, status: str | None = None, limit: int = 50
    ) -> list[DeliveryOut]:
        await self.get(subscription_id)
        query = select(deliveries).where(deliveries.c.subscription_id == subscription_id)
        if status is not None:
            query = query.where(deliveries.c.status == status)
        query = query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(limit)
        async with self.uow() as uow:
            rows = (await uow.session.execute(query)).all()
            ids = [r.id for r in rows]
            logged = (
                (
                    await uow.session.execute(
                        select(attempts)
                        .where(attempts.c.delivery_id.in_(ids))
                        .order_by(attempts.c.delivery_id, attempts.c.attempt, attempts.c.id)
                    )
                ).all()
                if ids
                else []
            )
        by_delivery: dict[str, list[AttemptOut]] = {}
        for a in logged:
            by_delivery.setdefault(a.delivery_id, []).append(
                AttemptOut(
                    attempt=a.attempt,
                    attempted_at=a.attempted_at,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
            )
        return [
            DeliveryOut(
                id=r.id,
                event_id=r.event_id,
                event_type=r.event_type,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_status_code=r.last_status_code,
                last_error=r.last_error,
                created_at=r.created_at,
                delivered_at=r.delivered_at,
                attempt_log=by_delivery.get(r.id, []),
            )
            for r in rows
        ]

    # --- sending ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not kill the sender
                log.warning("webhook_sender_failed", error=repr(exc))
                sent = 0
            if sent == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval)

    async def _claim(self) -> list[Any]:
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.settings.webhook_timeout_seconds + 30)
        query = (
            select(
                deliveries.c.id,
                deliveries.c.event_id,
                deliveries.c.envelope,
                deliveries.c.attempts,
                subscriptions.c.url,
                subscriptions.c.secret,
            )
            .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
            .where(deliveries.c.status == DeliveryStatus.PENDING, deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(self.settings.webhook_batch_size)
        )
        async with self.uow() as uow:
            if uow.session.bind is not None and uow.session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=deliveries)
            rows = (await uow.session.execute(query)).all()
            if rows:
                await uow.session.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=lease)
                )
            await uow.commit()
        return list(rows)

    async def send_due(self) -> int:
        """Send every delivery that is due now (one claim); return how many were tried."""
        rows = await self._claim()
        if rows:
            await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    async def _send(self, row: Any) -> None:
        body = json.dumps(row.envelope, separators=(",", ":"), ensure_ascii=False).encode()
        attempt = row.attempts + 1
        headers = {
            "content-type": "application/cloudevents+json",
            SIGNATURE_HEADER: sign(row.secret, body),
            EVENT_ID_HEADER: row.event_id,
            "X-CRM-Event-Type": str(row.envelope.get("type", "")),
            "X-CRM-Delivery-Id": row.id,
            "X-CRM-Attempt": str(attempt),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(row.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = int((time.perf_counter() - started) * 1000)
        await self._settle(row.id, attempt, status_code, error, duration_ms)

    def backoff(self, attempt: int) -> float:
        """Seconds before try `attempt + 1`: base × 2^(attempt-1), capped, with up to 10% jitter."""
        delay = min(
            self.settings.webhook_backoff_max_seconds,
            self.settings.webhook_backoff_seconds * 2 ** (attempt - 1),
        )
        return float(delay * (1 + random.random() / 10))  # jitter, not security

    async def _settle(
        self, delivery_id: str, attempt: int, status_code: int | None, error: str | None, duration_ms: int
    ) -> None:
        now = datetime.now(UTC)
        if error is None:
            values: dict[str, Any] = {
                "status": DeliveryStatus.DELIVERED,
                "delivered_at": now,
                "next_attempt_at": None,
            }
        elif attempt >= self.settings.webhook_max_attempts:
            values = {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
        else:
            values = {"next_attempt_at": now + timedelta(seconds=self.backoff(attempt))}
        async with self.uow() as uow:
            result = await uow.session.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.id == delivery_id,
                        deliveries.c.status == DeliveryStatus.PENDING,
                        deliveries.c.attempts == attempt - 1,
                    )
                )
                .values(attempts=attempt, last_status_code=status_code, last_error=error, **values)
            )
            if getattr(result, "rowcount", 0) == 0:
                return  # cancelled meanwhile (or settled by another replica after our claim expired)
            await uow.session.execute(
                attempts.insert().values(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    attempted_at=now,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            await uow.commit()
        if error is None:
            log.info("webhook_delivered", delivery_id=delivery_id, attempt=attempt)
        else:
            log.warning(
                "webhook_attempt_failed",
                delivery_id=delivery_id,
                attempt=attempt,
                error=error,
                gave_up=values.get("status") == DeliveryStatus.FAILED,
            )

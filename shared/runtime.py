"""A service's composition root: database, unit of work, outbox relay, consumer and HTTP app, wired once.

    runtime = ServiceRuntime(settings=..., metadata=..., tables=..., migrations=..., bus=bus)
    runtime.include_router(routes.router)
    consumers.register(runtime.consumer)

Construction subscribes the service's consumer to the bus, so in embedded mode every service is
listening before any relay delivers. `start()` migrates the database, starts the bus (if this
runtime owns it) and the relay; the FastAPI app's lifespan calls it when the service runs alone,
and the embedded composition calls it for all services at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import MetaData, text

from shared.auth.setup import install_service_auth
from shared.db import create_engine, session_factory
from shared.http import create_app, operations_router
from shared.logging import get_logger
from shared.messaging.bus import EventBus
from shared.messaging.consumer import EventConsumer
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import MessagingTables
from shared.metrics import DEAD_LETTERS, OUTBOX_BACKLOG
from shared.migrations import upgrade
from shared.settings import ServiceSettings
from shared.telemetry import configure_from as configure_telemetry
from shared.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)


class ServiceRuntime:
    metrics_interval: float = 5.0
    """Seconds between refreshes of the gauges that need a query (the outbox backlog)."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        metadata: MetaData,
        tables: MessagingTables,
        migrations: Path,
        bus: EventBus,
        owns_bus: bool,
        title: str,
        description: str,
        version: str = "0.1.0",
        openapi_tags: list[dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.telemetry = configure_telemetry(self.name, settings)
        self.metadata = metadata
        self.migrations = migrations
        self.bus = bus
        self.owns_bus = owns_bus
        self.engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=0,  # kept, never opened for a burst only (see `db_pool_size`)
            statement_cache_size=settings.db_statement_cache_size,
        )
        self.sessions = session_factory(self.engine)
        self.tables = tables
        self.uow = UnitOfWorkFactory(self.sessions, tables, source=f"/crm/{self.name}")
        self.relay = OutboxRelay(
            name=self.name,
            engine=self.engine,
            tables=tables,
            bus=bus,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
        )
        self.uow.on_commit(self.relay.wake)
        self.consumer = EventConsumer(
            settings.consumer_group, self.uow, max_attempts=settings.consumer_max_attempts, service=self.name
        )
        self._subscribed = False
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.app = create_app(
            service=self.name,
            title=title,
            description=description,
            version=version,
            lifespan=self._lifespan,
            openapi_tags=openapi_tags,
            max_in_flight=settings.max_in_flight,
        )
        self.app.state.runtime = self
        self.auth = install_service_auth(self.app, settings, self.name)
        self.app.include_router(operations_router(self.readiness))

    @classmethod
    def create(
        cls,
        settings: ServiceSettings,
        bus: EventBus | None,
        *,
        metadata: MetaData,
        tables: MessagingTables,
        migrations: Path,
        title: str,
        description: str,
    ) -> ServiceRuntime:
        """A service's runtime on the given bus (embedded mode shares one), or on its own bus
        chosen by the settings (distributed mode), which it then starts and stops itself."""
        from shared.messaging.factory import make_bus

        return cls(
            settings=settings,
            metadata=metadata,
            tables=tables,
            migrations=migrations,
            bus=bus
            or make_bus(
                settings,
                client_id=f"crm-{settings.service_name}",
                consumer_batch_size=settings.consumer_batch_size,
            ),
            owns_bus=bus is None,
            title=title,
            description=description,
        )

    def add_background(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A service-specific background job, started with the service and cancelled with it."""
        self._background.append(job)

    def include_router(self, router: APIRouter) -> None:
        self.app.include_router(router)

    def subscribe(self) -> None:
        """Attach the consumer to the bus once its handlers are registered (before the bus starts)."""
        if not self._subscribed and self.consumer.event_types:
            self.bus.subscribe(self.consumer)
            self._subscribed = True
            # Zero-valued series from the start: "no dead letters yet" reads as 0, not as absent.
            for event_type in self.consumer.event_types:
                DEAD_LETTERS.labels(self.consumer.group, event_type)

    async def start(self) -> None:
        self.subscribe()
        if self.settings.run_migrations:
            await upgrade(self.settings.database_url, self.migrations)
        if self.owns_bus:
            await self.bus.start()
        self.relay.start()
        self._tasks = [asyncio.create_task(job(), name=f"{self.name}-background") for job in self._background]
        self._tasks.append(asyncio.create_task(self._report_backlog(), name=f"{self.name}-outbox-backlog"))
        # Everything loaded so far (modules, models, metadata) lives as long as the process: moved out
        # of the garbage collector's generations, it is no longer traversed by every full collection,
        # which keeps those pauses short (they set the p99 latency of request handling).
        gc.collect()
        gc.freeze()
        log.info(
            "service_started",
            service=self.name,
            database=self.engine.url.render_as_string(hide_password=True),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.relay.stop()
        if self.owns_bus:
            await self.bus.stop()
        await self.engine.dispose()

    async def _report_backlog(self) -> None:
        """Keep `crm_outbox_backlog` current: counted every `metrics_interval` seconds while running."""
        while True:
            try:
                OUTBOX_BACKLOG.labels(self.name).set(await self.relay.backlog())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: readiness says so; keep the last figure
                log.debug("outbox_backlog_unavailable", service=self.name, error=repr(exc))
            await asyncio.sleep(self.metrics_interval)

    async def readiness(self) -> dict[str, bool]:
        database = True
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            OUTBOX_BACKLOG.labels(self.name).set(await self.relay.backlog())
        except Exception:
            database = False
        return {"database": database, "bus": await self.bus.ready()}

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


# The dependencies are `async def` although nothing in them waits: FastAPI runs a plain `def`
# dependency in a worker thread, a hand-off that cost every request ~0.3 ms of CPU.
async def get_runtime(request: Request) -> ServiceRuntime:
    return _runtime(request)


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def get_uow(request: Request) -> UnitOfWork:
    return _runtime(request).uow()


UowDep = Annotated[UnitOfWork, Depends(get_uow)]

"""Alembic migrations, one history per service, run programmatically or from `alembic -c`.

A service's `migrations/env.py` is one call to `run_env(metadata)`; `upgrade(url, script_location)`
runs a service's migrations to head at start-up (or from `crm db upgrade`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config


def alembic_config(url: str, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, script_location: Path, revision: str = "heads") -> None:
    """Bring a service's database to `revision` (every head by default: features developed side by side
    may add migrations on separate branches until a merge revision joins them). Safe at every start-up."""
    if url.startswith("sqlite"):
        from shared.db import create_engine

        # Make sure the directory exists before Alembic connects.
        engine = create_engine(url)
        await engine.dispose()
    config = alembic_config(url, script_location)
    await asyncio.to_thread(command.upgrade, config, revision)


def run_env(metadata: MetaData) -> None:
    """Body of each service's `migrations/env.py`."""
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas starting together on a fresh database take turns instead of racing; the lock
            # is released when this connection closes.
            connection.execute(text("SELECT pg_advisory_lock(hashtext('alembic:' || current_database()))"))
            connection.commit()
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(run_async())

"""Each service's Alembic history builds exactly the schema its models declare, and runs both ways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from services.gateway.webhooks.hub import MIGRATIONS as GATEWAY
from services.gateway.webhooks.models import metadata as gateway_metadata
from services.identity.app import MIGRATIONS as IDENTITY
from services.identity.models import metadata as identity_metadata
from services.interactions.app import MIGRATIONS as INTERACTIONS
from services.interactions.models import metadata as interactions_metadata
from services.loyalty.app import MIGRATIONS as LOYALTY
from services.loyalty.models import metadata as loyalty_metadata
from services.segmentation.app import MIGRATIONS as SEGMENTATION
from services.segmentation.models import metadata as segmentation_metadata
from shared.migrations import alembic_config, upgrade

SERVICES = {
    "identity": (IDENTITY, identity_metadata),
    "interactions": (INTERACTIONS, interactions_metadata),
    "segmentation": (SEGMENTATION, segmentation_metadata),
    "loyalty": (LOYALTY, loyalty_metadata),
    "gateway": (GATEWAY, gateway_metadata),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_migrations_match_the_models(service: str, pg_database: str) -> None:
    migrations, metadata = SERVICES[service]
    await upgrade(pg_database, Path(migrations))
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    structural = [
        d
        for d in diffs
        if not (
            isinstance(d, tuple)
            and d[0] in {"add_index", "remove_index", "add_constraint", "remove_constraint"}
        )
    ]
    assert structural == [], f"{service}: models and migrations disagree: {structural}"
    indexed = _indexed_columns(diffs)
    assert indexed["added"] == indexed["removed"], f"{service}: index columns differ: {indexed}"


def _indexed_columns(diffs: list[object]) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    out: dict[str, set[tuple[str, tuple[str, ...]]]] = {"added": set(), "removed": set()}
    for diff in diffs:
        if isinstance(diff, tuple) and diff[0] in {
            "add_index",
            "remove_index",
            "add_constraint",
            "remove_constraint",
        }:
            item = diff[1]
            columns = tuple(sorted(c.name for c in getattr(item, "columns", [])))
            out["added" if diff[0].startswith("add") else "removed"].add((item.table.name, columns))
    return out


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_downgrade_then_upgrade_again(service: str, pg_database: str) -> None:
    migrations, _ = SERVICES[service]
    await upgrade(pg_database, Path(migrations))
    await asyncio.to_thread(command.downgrade, alembic_config(pg_database, Path(migrations)), "base")
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert set(tables) <= {"alembic_version"}
    await upgrade(pg_database, Path(migrations))

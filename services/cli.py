"""`crm`: the platform's command line — run it, serve one service, migrate, dead letters, demo data."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shared.logging import configure_logging
from shared.settings import PlatformSettings

app = typer.Typer(
    help="The CRM platform's command line.", no_args_is_help=True, pretty_exceptions_enable=False
)
dlq = typer.Typer(help="Dead letters: events a consumer could not handle.", no_args_is_help=True)
db = typer.Typer(help="Databases: migrations.", no_args_is_help=True)
identity = typer.Typer(help="Identity: batch resolution and match weights.", no_args_is_help=True)
interactions = typer.Typer(help="Interactions: bulk import of contacts.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(db, name="db")
app.add_typer(identity, name="identity")
app.add_typer(interactions, name="interactions")
console = Console()

SERVICE_APPS = {
    "identity": "services.identity.app:create_app",
    "interactions": "services.interactions.app:create_app",
    "segmentation": "services.segmentation.app:create_app",
    "loyalty": "services.loyalty.app:create_app",
    "gateway": "services.gateway.app:create_gateway",
}
DEFAULT_PORTS = {
    "gateway": 8000,
    "identity": 8001,
    "interactions": 8002,
    "segmentation": 8003,
    "loyalty": 8004,
}


def _logging() -> None:
    settings = PlatformSettings()
    configure_logging(settings.log_level, json=settings.log_json and not sys.stderr.isatty())


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the gateway")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo data set once started")] = False,
    demo_customers: Annotated[int, typer.Option(help="How many demo customers")] = 200,
) -> None:
    """Embedded mode: the whole platform in this process (SQLite under var/, in-process bus)."""
    import uvicorn

    from services.platform import create_embedded_app

    _logging()
    config = uvicorn.Config(create_embedded_app(), host=host, port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                return
            await asyncio.sleep(0.05)
        console.print(f"[bold green]CRM platform running[/] — API docs: http://{host}:{port}/docs")
        if demo:
            from services.demo import load

            counts = await load(f"http://{host}:{port}", customers=demo_customers)
            console.print(f"Demo data loaded: {counts}")
        await serving

    asyncio.run(main())


@app.command()
def serve(
    service: Annotated[
        str, typer.Argument(help="identity | interactions | segmentation | loyalty | gateway")
    ],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: 8000 gateway, 8001-8004 services")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Distributed mode: serve one service (or the gateway) in this process."""
    import uvicorn

    if service not in SERVICE_APPS:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICE_APPS)}")
    _logging()
    uvicorn.run(
        SERVICE_APPS[service],
        factory=True,
        host=host,
        port=port or DEFAULT_PORTS[service],
        workers=workers,
        log_config=None,
        access_log=False,
    )


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="The gateway's address")] = "http://127.0.0.1:8000",
    customers: Annotated[int, typer.Option(help="How many customers")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed makes the same data")] = 42,
) -> None:
    """Load the demo data set through the gateway (with a progress bar)."""
    from services.demo import load

    counts = asyncio.run(load(url, customers=customers, seed=seed))
    console.print(f"Loaded: {counts}")
    if counts["errors"]:
        raise typer.Exit(1)


@db.command("upgrade")
def db_upgrade(
    service: Annotated[str | None, typer.Argument(help="One service, or all when omitted")] = None,
) -> None:
    """Run a service's Alembic migrations to head."""
    from services.platform import build_platform

    _logging()
    platform = build_platform()

    async def main() -> None:
        for name, runtime in platform.runtimes.items():
            if service in (None, name):
                from shared.migrations import upgrade

                await upgrade(runtime.settings.database_url, runtime.migrations)
                console.print(f"{name}: migrated")
            await runtime.engine.dispose()

    asyncio.run(main())


@dlq.command("list")
def dlq_list(
    group: Annotated[str | None, typer.Option(help="Consumer group, e.g. crm-loyalty")] = None,
    include_replayed: Annotated[bool, typer.Option("--all", help="Include those already replayed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines")] = False,
) -> None:
    """List dead letters awaiting attention."""
    from services.platform import build_platform

    platform = build_platform()

    async def main() -> None:
        try:
            letters = await platform.bus.dead_letters(group, include_replayed=include_replayed)
        finally:
            for runtime in platform.runtimes.values():
                await runtime.engine.dispose()
        if as_json:
            for letter in letters:
                print(json.dumps(dataclasses.asdict(letter), default=str))
            return
        table = Table("ref", "group", "topic", "type", "subject", "failed at", "error")
        for letter in letters:
            table.add_row(
                letter.ref,
                letter.consumer_group,
                letter.topic,
                letter.event_type,
                letter.subject or "",
                str(letter.failed_at or ""),
                letter.error[:80],
            )
        console.print(table)
        console.print(f"{len(letters)} dead letter(s)")

    asyncio.run(main())


@dlq.command("replay")
def dlq_replay(
    group: Annotated[str | None, typer.Option(help="Consumer group; all when omitted")] = None,
    ref: Annotated[list[str] | None, typer.Option(help="Only these refs (repeatable)")] = None,
) -> None:
    """Deliver dead letters again (after fixing what made them fail)."""
    from services.platform import build_platform

    platform = build_platform()

    async def main() -> int:
        count = await platform.bus.replay(group, ref)
        await platform.bus.stop()
        for runtime in platform.runtimes.values():
            await runtime.engine.dispose()
        return count

    console.print(f"replayed {asyncio.run(main())} dead letter(s)")


async def _with_identity(job: Any) -> Any:
    """Run a job against the identity database (migrated), outside any running server."""
    from services.identity.app import build
    from shared.messaging.bus import InProcessBus
    from shared.migrations import upgrade

    runtime = build(bus=InProcessBus())
    try:
        await upgrade(runtime.settings.database_url, runtime.migrations)
        return await job(runtime)
    finally:
        await runtime.engine.dispose()


@identity.command("import")
def identity_import(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl or .csv file of source records")
    ],
    source_system: Annotated[str | None, typer.Option(help="Source system for rows that do not say")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the full report (per-row errors) as JSON here")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="Processes validating and normalising rows ahead (0: none)")
    ] = 1,
) -> None:
    """Resolve a file of source records: each is matched as if it arrived live."""
    from services.identity.batch import import_records

    _logging()
    result = asyncio.run(
        _with_identity(lambda rt: import_records(rt, path, source_system=source_system, workers=workers))
    )
    _print_report(result.as_dict(), report)


@identity.command("rematch")
def identity_rematch(
    report: Annotated[Path | None, typer.Option(help="Write the report as JSON here")] = None,
) -> None:
    """Re-run matching between all customers with the current weights (merge / review / unique)."""
    from services.identity.batch import rematch

    _logging()
    result = asyncio.run(_with_identity(rematch))
    _print_report(result.as_dict(), report)


@identity.command("train")
def identity_train(
    from_reviews: Annotated[
        bool, typer.Option("--from-reviews", help="Also learn from decided reviews")
    ] = False,
) -> None:
    """Estimate match weights from the data (EM) and activate them."""
    from services.identity.batch import train

    _logging()
    summary = asyncio.run(_with_identity(lambda rt: train(rt, from_reviews=from_reviews)))
    summary.pop("model", None)
    console.print(summary)


async def _with_interactions(job: Any) -> Any:
    """Run a job against the interactions database (migrated), outside any running server. Customers
    are resolved by an identity service built on its own database in this process (as in embedded
    mode); events go to the interactions outbox and leave when the service next runs."""
    from services.identity.app import build as build_identity
    from services.interactions.app import build as build_interactions
    from services.platform import in_process_client
    from shared.messaging.bus import InProcessBus
    from shared.migrations import upgrade

    identity_runtime = build_identity(bus=InProcessBus())
    identity_client = in_process_client(identity_runtime.app, "identity")
    runtime = build_interactions(bus=InProcessBus(), identity=identity_client)
    try:
        await upgrade(identity_runtime.settings.database_url, identity_runtime.migrations)
        await upgrade(runtime.settings.database_url, runtime.migrations)
        return await job(runtime)
    finally:
        await identity_client.aclose()
        await runtime.engine.dispose()
        await identity_runtime.engine.dispose()


@interactions.command("import")
def interactions_import(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="A .jsonl or .csv file of contacts (the POST /interactions body)",
        ),
    ],
    report: Annotated[
        Path | None, typer.Option(help="Write the full report (per-row errors) as JSON here")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=5000, help="Rows per transaction (the bulk endpoint's batch)")
    ] = 1000,
    source_system: Annotated[str | None, typer.Option(help="Source system for rows that do not say")] = None,
) -> None:
    """Record a file of contacts; malformed rows are reported (row, field, reason), never blocking."""
    from services.interactions.importer import import_file

    _logging()
    result = asyncio.run(
        _with_interactions(
            lambda rt: import_file(rt, path, batch_size=batch_size, source_system=source_system)
        )
    )
    _print_report(result.as_dict(), report)


def _print_report(data: dict[str, Any], path: Path | None) -> None:
    table = Table("outcome", "records")
    for outcome, count in sorted(data["outcomes"].items()):
        table.add_row(outcome, str(count))
    table.add_row("rejected", str(data.get("rejected", 0)))
    console.print(table)
    for error in data.get("errors", [])[:10]:
        console.print(f"row {error['row']}: {error['field'] or '(row)'}: {error['message']}")
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"report written to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""`crm`: the platform's command line — run it, serve one service, migrate, dead letters, demo data."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import datetime
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
loyalty = typer.Typer(
    help="Loyalty: prove the points ledger, run the expiry and pending-release passes.", no_args_is_help=True
)
app.add_typer(dlq, name="dlq")
app.add_typer(db, name="db")
app.add_typer(identity, name="identity")
app.add_typer(interactions, name="interactions")
app.add_typer(loyalty, name="loyalty")
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


async def _with_loyalty(job: Any) -> Any:
    """Run a job against the loyalty database (migrated), outside any running server. Events the job
    publishes go to the loyalty outbox and leave when the service next runs."""
    from services.loyalty.app import build
    from shared.messaging.bus import InProcessBus
    from shared.migrations import upgrade

    runtime = build(bus=InProcessBus())
    try:
        await upgrade(runtime.settings.database_url, runtime.migrations)
        return await job(runtime)
    finally:
        await runtime.engine.dispose()


@loyalty.command("check")
def loyalty_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Prove the books: cached balances equal their entries, transactions balance, lots match.
    Exits with 1 when anything is wrong, naming the accounts, transactions or members."""
    from services.loyalty import ledger

    async def job(runtime: Any) -> Any:
        async with runtime.uow() as uow:
            return await ledger.check(uow.session)

    _logging()
    report = asyncio.run(_with_loyalty(job))
    if as_json:
        print(json.dumps(dataclasses.asdict(report) | {"ok": report.ok}))
    else:
        summary = Table("check", "result", title="Loyalty ledger check")
        summary.add_row("accounts", str(report.accounts))
        summary.add_row("transactions", str(report.transactions))
        summary.add_row("sum of all entries", str(report.total))
        summary.add_row("drifted accounts", str(len(report.drifted_accounts)))
        summary.add_row("unbalanced transactions", str(len(report.unbalanced_transactions)))
        summary.add_row("lot mismatches", str(len(report.lot_mismatches)))
        summary.add_row("books", "[green]OK[/]" if report.ok else "[bold red]WRONG[/]")
        console.print(summary)
        # One line per problem, never wrapped or cut: the ids are meant to be copied.
        for account, balance, entries in report.drifted_accounts:
            console.print(
                f"[red]drifted account[/] {account}: cached balance {balance}, sum of entries {entries}",
                soft_wrap=True,
            )
        for transaction, total in report.unbalanced_transactions:
            console.print(
                f"[red]unbalanced transaction[/] {transaction}: entries sum to {total}", soft_wrap=True
            )
        for member, balance, remaining in report.lot_mismatches:
            console.print(
                f"[red]lot mismatch[/] member {member}: available {balance}, lots hold {remaining}",
                soft_wrap=True,
            )
    if not report.ok:
        raise typer.Exit(1)


@loyalty.command("expire")
def loyalty_expire(
    at: Annotated[
        str | None,
        typer.Option("--now", help="Run as of this instant (ISO 8601 with a time zone); default: now"),
    ] = None,
    program: Annotated[str | None, typer.Option(help="Only this program")] = None,
    notices: Annotated[
        bool, typer.Option("--notices/--no-notices", help="Also send expiring-soon reminders")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Lots per pass")] = 1000,
) -> None:
    """One pending-release pass and one expiry pass (repeated while there is more), with progress bars."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.loyalty import jobs

    try:
        now = datetime.fromisoformat(at) if at else None
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 instant: {exc}", param_hint="--now") from exc
    if now is not None and now.tzinfo is None:
        raise typer.BadParameter("give a time zone (e.g. 2026-12-01T00:00:00Z)", param_hint="--now")

    class Bars:
        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.task: Any = None

        def start(self, description: str, total: int) -> None:
            self.task = self.progress.add_task(description, total=total)

        def advance(self, count: int = 1) -> None:
            if self.task is not None:
                self.progress.advance(self.task, count)

    async def job(runtime: Any) -> list[Any]:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            return await jobs.run_passes(
                runtime.uow,
                now=now,
                limit=limit,
                program_id=program,
                progress=Bars(progress),
                notices=notices,
            )

    _logging()
    results = asyncio.run(_with_loyalty(job))
    table = Table("pass", "members", "lots", "points", "failed", title="Loyalty passes")
    totals: dict[str, list[int]] = {}
    for result in results:
        row = totals.setdefault(result.name, [0, 0, 0, 0])
        for i, value in enumerate((result.members, result.lots, result.points, len(result.failed))):
            row[i] += value
    for name, (members, lots, points, failed) in totals.items():
        table.add_row(name, str(members), str(lots), str(points), str(failed))
    console.print(table)
    if any(result.failed for result in results):
        raise typer.Exit(1)


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

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
users_cli = typer.Typer(help="Staff users who log in to the gateway.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys for integrations (stored hashed; shown once).", no_args_is_help=True)
auth_cli = typer.Typer(help="Authentication: token-signing keys.", no_args_is_help=True)
app.add_typer(users_cli, name="users")
app.add_typer(keys_cli, name="keys")
app.add_typer(auth_cli, name="auth")
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

    from services.platform import build_platform

    _logging()
    platform = build_platform()
    config = uvicorn.Config(platform.gateway(), host=host, port=port, log_config=None, access_log=False)
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

            token = await platform.service_token()  # in-process: no password needed
            headers = {"authorization": f"Bearer {token}"} if token else None
            counts = await load(f"http://{host}:{port}", customers=demo_customers, headers=headers)
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
    token: Annotated[str | None, typer.Option(envvar="CRM_TOKEN", help="A bearer access token")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CRM_API_KEY", help="An API key (crm keys create)")
    ] = None,
) -> None:
    """Load the demo data set through the gateway (with a progress bar). Authenticate with `--token`
    or `--api-key` (or CRM_TOKEN / CRM_API_KEY); `crm run --demo` needs neither."""
    from services.demo import load

    headers = {"authorization": f"Bearer {token}"} if token else {"x-api-key": api_key} if api_key else None
    counts = asyncio.run(load(url, customers=customers, seed=seed, headers=headers))
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
        int | None,
        typer.Option(
            min=0,
            help="Processes validating and normalising rows ahead, at lower priority (0: none; default 2)",
        ),
    ] = None,
) -> None:
    """Resolve a file of source records: each is matched as if it arrived live."""
    from services.identity.batch import IMPORT_WORKERS, import_records

    _logging()
    count = IMPORT_WORKERS if workers is None else workers
    result = asyncio.run(
        _with_identity(lambda rt: import_records(rt, path, source_system=source_system, workers=count))
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
    from shared.auth.setup import in_process_service_token
    from shared.messaging.bus import InProcessBus
    from shared.migrations import upgrade

    identity_runtime = build_identity(bus=InProcessBus())
    identity_client = in_process_client(identity_runtime.app, "identity")
    token = in_process_service_token(identity_runtime.settings, identity_runtime.app)
    runtime = build_interactions(bus=InProcessBus(), identity=identity_client, service_token=token)
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


def _gateway_database_url() -> tuple[Any, str]:
    """The gateway's settings and database: CRM_GATEWAY_DATABASE_URL, else the one deploy/up.sh
    recorded in var/run/gateway.database_url, else embedded mode's var/gateway.db."""
    from services.gateway.settings import load_settings

    settings = load_settings()
    if settings.database_url:
        return settings, settings.database_url
    recorded = settings.var_dir / "run" / "gateway.database_url"
    if recorded.exists() and recorded.read_text().strip():
        return settings, recorded.read_text().strip()
    url = settings.gateway_database_url(embedded=True)
    assert url is not None
    return settings, url


def _with_auth_store(action: Any) -> Any:
    """Run `action(store)` against the gateway's database (migrated first)."""
    from services.gateway.auth.store import AuthStore
    from services.gateway.webhooks.hub import MIGRATIONS
    from shared.auth.keys import LocalKeySet
    from shared.db import create_engine
    from shared.migrations import upgrade

    settings, url = _gateway_database_url()

    async def main() -> Any:
        await upgrade(url, MIGRATIONS)
        engine = create_engine(url, pool_size=1)
        try:
            return await action(AuthStore(settings, engine, LocalKeySet()))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in ("id", "username"))
    for row in rows:
        table.add_row(*[str(row.get(c) if row.get(c) is not None else "") for c in columns])
    console.print(table)


@users_cli.command("create")
def users_create(
    username: Annotated[str, typer.Argument()],
    role: Annotated[list[str], typer.Option("--role", help="admin, marketer, support, analyst, integration")],
    branch: Annotated[str | None, typer.Option(help="Limit the user to one branch/store")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="CRM_NEW_USER_PASSWORD", help="Prompted for when omitted")
    ] = None,
) -> None:
    """Create a staff user (the password is argon2-hashed)."""
    secret = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _with_auth_store(lambda store: store.create_user(username, secret, role, branch))
    console.print(f"Created user {user['username']} with roles {', '.join(user['roles'])}")


@users_cli.command("list")
def users_list() -> None:
    """Every staff user."""
    rows = _with_auth_store(lambda store: store.list_users())
    _table(rows, ["username", "roles", "branch", "disabled", "created_at", "last_login_at"], "Users")


@users_cli.command("disable")
def users_disable(username: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: no more logins, refresh tokens revoked (access tokens expire within minutes)."""
    _with_auth_store(lambda store: store.update_user(username, disabled=True))
    console.print(f"Disabled {username}")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for")],
    role: Annotated[list[str] | None, typer.Option("--role", help="Default: integration")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Narrow to these permissions")] = None,
    expires_days: Annotated[int | None, typer.Option(help="Expire after this many days")] = None,
) -> None:
    """Create an API key. The key is printed once, on the last line; only its hash is stored."""
    from datetime import UTC, timedelta

    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    created = _with_auth_store(
        lambda store: store.create_api_key(name, role or ["integration"], scope, expires, created_by="cli")
    )
    console.print(f"Created API key {created['id']} ({', '.join(created['roles'])}); send it as X-API-Key.")
    print(f"API key: {created['key']}")


@keys_cli.command("list")
def keys_list() -> None:
    """Every API key (never the secrets)."""
    rows = _with_auth_store(lambda store: store.list_api_keys())
    _table(
        rows,
        ["id", "name", "roles", "scopes", "expires_at", "revoked_at", "created_at", "last_used_at"],
        "API keys",
    )


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke an API key (gateways stop accepting it within CRM_GATEWAY_AUTH_APIKEY_CACHE_SECONDS)."""
    _with_auth_store(lambda store: store.revoke_api_key(key_id))
    console.print(f"Revoked {key_id}")


@auth_cli.command("token")
def auth_token(
    role: Annotated[list[str] | None, typer.Option("--role", help="Default: service")] = None,
    subject: Annotated[str, typer.Option(help="The token's subject")] = "cli",
    ttl_seconds: Annotated[int, typer.Option(min=30, max=86_400, help="Lifetime")] = 3600,
) -> None:
    """Mint an access token with the current signing key (needs the gateway's database and
    CRM_SECRET_KEY). It is accepted by the gateway and by every service directly — for tools and
    benchmarks that call services without the gateway. Printed on the last line."""
    from shared.auth import policy
    from shared.auth.tokens import Principal

    roles = policy.valid_roles(role or ["service"])
    kind = "service" if roles == ["service"] else "client"

    async def mint(store: Any) -> str:
        await store.load_keys()
        principal = Principal(sub=subject, kind=kind, roles=frozenset(roles))
        token: str = store.issue(principal, ttl_seconds=ttl_seconds)[0]
        return token

    print(_with_auth_store(mint))


@auth_cli.command("rotate-keys")
def auth_rotate_keys() -> None:
    """Rotate the token-signing key now. The old key stays in the JWKS until its tokens have expired;
    running gateways pick the new one up at their next key check (they also rotate by age)."""

    async def rotate(store: Any) -> str:
        await store.load_keys()
        kid: str = await store.rotate()
        return kid

    kid = _with_auth_store(rotate)
    console.print(f"New signing key {kid}")


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

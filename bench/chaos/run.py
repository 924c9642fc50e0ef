"""`python -m bench.chaos`: purchases under crashes, then prove each was applied exactly once.

In the spirit of Jepsen's Kafka checks, on this machine and against its own topology (own PostgreSQL
cluster, Kafka broker, service ports and state directory: see `bench.chaos.topology`):

1. start the topology from empty state; create customers and a loyalty program with a simple rule
   (`--points-per-unit` points per whole euro, every buyer enrolled);
2. post `--purchases` purchases through the gateway at `--rate` per second, each with a unique id,
   recording which were acknowledged (2xx) and which failed or got no answer, while the fault schedule
   (derived from `--seed`, printed first) kills each service process, the gateway and the Kafka broker
   with SIGKILL and restarts PostgreSQL, one fault about every `--fault-every` seconds, restarting each
   killed process as `deploy/up.sh` does;
3. retry every unacknowledged purchase with the same id (as a real client would) until acknowledged;
4. wait until the system has drained (outboxes empty, consumer lag 0, counts steady);
5. check and print the table of `bench.chaos.checks`; exit 1 on any violation (2 if the run itself
   could not be carried out). Everything started is stopped at the end, failure or not.

    python -m bench.chaos --size short           # CI: 1,500 purchases, a fault every ~4 s
    python -m bench.chaos --size full --seed 7   # 20,000 purchases
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.chaos import auth
from bench.chaos.checks import Check, DrainState, Program, check_all, wait_drained
from bench.chaos.load import LoadStats, create_customers, make_purchases, retry_unacknowledged, run_load
from bench.chaos.schedule import INFRASTRUCTURE, Fault, fault_schedule
from bench.chaos.topology import REPO, Topology, TopologyError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

SIZES: dict[str, dict[str, Any]] = {
    "short": {
        "purchases": 1_500,
        "rate": 20.0,
        "fault_every": 4.0,
        "customers": 40,
        "drain_timeout": 300.0,
        "retry_timeout": 120.0,
    },
    "full": {
        "purchases": 20_000,
        "rate": 35.0,
        "fault_every": 5.0,
        "customers": 400,
        "drain_timeout": 1200.0,
        "retry_timeout": 900.0,
    },
}


@dataclass
class FaultRecord:
    number: int
    kind: str
    planned_at: float
    started_at: float = 0.0
    back_after: float = 0.0  # seconds from the kill until the process answered again
    under_load: bool = True  # started while purchases were still being sent
    detail: str = ""
    error: str = ""


async def inject_faults(
    topology: Topology, faults: list[Fault], t0: float, load_done: asyncio.Event, records: list[FaultRecord]
) -> None:
    """Run the schedule: each fault starts at its time, in the background (crash, downtime, restart),
    so service crashes may overlap — but never two faults on one target, and the Kafka and PostgreSQL
    faults only alone (they wait for the faults in progress; others wait for them). Time spent waiting
    delays the rest of the schedule, so faults stay spaced. Faults due after the load has finished are
    skipped, except that every kind runs at least once."""
    running: dict[str, asyncio.Task[None]] = {}
    started_kinds: set[str] = set()

    async def carry_out(fault: Fault, record: FaultRecord) -> None:
        t = time.monotonic()
        try:
            record.detail = await asyncio.to_thread(_apply, topology, fault)
        except (TopologyError, OSError, subprocess.SubprocessError) as exc:
            record.error = str(exc)
            console.print(f"[red]  fault {fault.number} failed: {escape(str(exc))}[/]")
        record.back_after = time.monotonic() - t
        console.print(
            f"[dim]t+{time.monotonic() - t0:6.1f}s  fault {fault.number}: {fault.target} back after "
            f"{record.back_after:.1f} s[/]"
        )

    slip = 0.0  # time lost waiting for conflicting faults: the rest of the schedule moves with it
    for fault in faults:
        if load_done.is_set() and fault.kind in started_kinds:
            continue
        delay = t0 + fault.at + slip - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load_done.wait(), delay)
            if load_done.is_set() and fault.kind in started_kinds:
                continue
        while True:
            busy = {target: task for target, task in running.items() if not task.done()}
            exclusive = fault.target in INFRASTRUCTURE or any(t in INFRASTRUCTURE for t in busy)
            blocking = (
                list(busy.values()) if exclusive else [busy[fault.target]] if fault.target in busy else []
            )
            if not blocking:
                break
            await asyncio.wait(blocking, return_when=asyncio.FIRST_COMPLETED)
        if load_done.is_set() and fault.kind in started_kinds:
            continue
        slip = max(slip, time.monotonic() - t0 - fault.at)
        record = FaultRecord(
            fault.number,
            fault.kind,
            fault.at,
            started_at=time.monotonic() - t0,
            under_load=not load_done.is_set(),
        )
        records.append(record)
        started_kinds.add(fault.kind)
        console.print(f"[yellow]t+{record.started_at:6.1f}s  fault {fault.number}: {fault.describe()}[/]")
        running[fault.target] = asyncio.create_task(carry_out(fault, record))
    await asyncio.gather(*running.values())


def _apply(topology: Topology, fault: Fault) -> str:
    """Carry out one fault (blocking): crash or stop, stay down, start again and wait until ready."""
    target = fault.target
    if target == "kafka":
        topology.kafka_kill9()
        time.sleep(fault.downtime)
        topology.kafka_start()
        return "kill -9 broker, deploy/kafka.sh start"
    if target == "postgres":
        topology.postgres_stop()
        time.sleep(fault.downtime)
        topology.postgres_start()
        return "deploy/postgres.sh stop, start"
    pid = topology.kill9(target)
    time.sleep(fault.downtime)
    topology.restart(target)
    return f"kill -9 pid {pid}, deploy/up.sh service {target}"


async def setup_program(client: httpx.AsyncClient, program: Program) -> None:
    body = {
        "id": program.id,
        "name": "Chaos test",
        "currency": "EUR",
        "points_per_unit": program.points_per_unit,
        "settings": {"auto_enrol": True},
    }
    response = await client.post("/api/loyalty/programs", json=body)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"could not create the program: {response.status_code} {response.text[:200]}")
    # The default program (1 point per whole unit, every buyer enrolled) is created on first use:
    # reading the list makes sure it exists before the first purchase is handled.
    (await client.get("/api/loyalty/programs")).raise_for_status()


async def scenario(args: argparse.Namespace, topology: Topology) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "seed": args.seed,
        "purchases": args.purchases,
        "rate": args.rate,
        "fault_every": args.fault_every,
    }
    duration = args.purchases / args.rate
    faults = fault_schedule(args.seed, duration=duration, every=args.fault_every)
    table = Table("#", "at (s)", "fault", "downtime (s)", title=f"Fault schedule (seed {args.seed})")
    for fault in faults:
        table.add_row(str(fault.number), f"{fault.at:.1f}", fault.kind, f"{fault.downtime:.1f}")
    console.print(table)

    t_start = time.monotonic()
    with console.status("starting the chaos topology (deploy/up.sh) …"):
        await asyncio.to_thread(topology.up, fresh=True)
    console.print(
        f"topology up in {time.monotonic() - t_start:.0f} s: gateway {topology.gateway_url}, PostgreSQL "
        f":{topology.pg_port}, Kafka :{topology.kafka_port}, state {topology.var_dir}"
    )
    credentials = auth.obtain(topology, args.token, args.api_key, enabled=args.auth_on)
    headers = credentials.headers() if credentials else {}
    how = (
        f"on, {credentials.kind} from {credentials.source}" if credentials else "off (CRM_AUTH_ENABLED=false)"
    )
    console.print(f"authentication: {how}")

    programs = [Program("chaos", args.points_per_unit), Program("default", 1)]
    limits = httpx.Limits(
        max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8
    )
    timeout = httpx.Timeout(args.request_timeout, connect=3.0)
    async with httpx.AsyncClient(
        base_url=topology.gateway_url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        await setup_program(client, programs[0])
        customer_ids = await create_customers(client, args.seed, args.customers)
        purchases = make_purchases(args.seed, args.purchases, len(customer_ids), datetime.now(UTC))
        console.print(
            f"{len(customer_ids)} customers, program {programs[0].id!r}: "
            f"{args.points_per_unit} point(s) per whole EUR (and 'default': 1)"
        )

        # -- load and faults --------------------------------------------------------------------------
        stats = LoadStats()
        records: list[FaultRecord] = []
        load_done = asyncio.Event()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("purchases", total=len(purchases), counts="")

            def advance() -> None:
                c = stats.counts()
                progress.update(
                    task,
                    advance=1,
                    counts=f"acked {c['acked']}  failed {c['failed']}  no answer {c['unknown']}",
                )

            t0 = time.monotonic()
            injector = asyncio.create_task(inject_faults(topology, faults, t0, load_done, records))
            try:
                await run_load(
                    client,
                    purchases,
                    customer_ids,
                    rate=args.rate,
                    concurrency=args.concurrency,
                    stats=stats,
                    on_progress=advance,
                )
            finally:
                load_done.set()
            await injector
        load_seconds = stats.finished - stats.started
        first = stats.counts()
        console.print(
            f"load: {len(purchases)} purchases in {load_seconds:.0f} s — acknowledged {first['acked']}, "
            f"failed {first['failed']}, no answer {first['unknown']}; {len(records)} faults injected"
        )
        for error, n in stats.errors().most_common(8):
            console.print(f"  [dim]{n:5d} × {error}[/]")
        dead = topology.dead_processes()
        if dead:
            console.print(f"[red]not running after the faults: {', '.join(dead)}: restarting[/]")
            for process in dead:
                await asyncio.to_thread(topology.restart, process)

        # -- a real client's retries -------------------------------------------------------------------
        await asyncio.sleep(2)  # requests that timed out on our side may still commit on theirs
        unacked_first = [e for e, o in stats.outcomes.items() if o.status != "acked"]
        with console.status(f"retrying {len(unacked_first)} unacknowledged purchase(s) with the same id …"):
            never = await retry_unacknowledged(
                client, purchases, customer_ids, stats, timeout=args.retry_timeout
            )
        applied_anyway = sum(1 for e in unacked_first if stats.outcomes[e].already_recorded)
        recorded_now = len(unacked_first) - applied_anyway - len(never)
        console.print(
            f"retried {len(unacked_first)}: {applied_anyway} had been recorded despite the error "
            f"(200 on retry), {recorded_now} recorded now, {len(never)} never acknowledged"
        )

        # -- drain -------------------------------------------------------------------------------------
        t_drain = time.monotonic()
        with console.status("waiting for the system to drain …") as status:

            def polled(state: DrainState) -> None:
                status.update(f"waiting for the system to drain: {state.describe()}")

            drained, state = await wait_drained(topology, args.drain_timeout, polled)
        drain_seconds = time.monotonic() - t_drain
        verdict = "drained" if drained else "[red]NOT drained[/]"
        console.print(f"{verdict} after {drain_seconds:.0f} s: {state.describe()}")

        # -- checks ------------------------------------------------------------------------------------
        checks, letters = await check_all(topology, client, purchases, customer_ids, programs, never)
    if not drained:
        checks.append(
            Check(
                "drained (outbox 0, lag 0, counts steady)",
                "yes",
                state.describe(),
                [f"not drained within {args.drain_timeout:.0f} s"],
            )
        )
    missing_kinds = sorted({f.kind for f in faults} - {r.kind for r in records if not r.error})
    checks.append(
        Check(
            "fault schedule: every kind injected",
            str(len({f.kind for f in faults})),
            str(len({r.kind for r in records if not r.error})),
            [f"not injected: {k}" for k in missing_kinds]
            + [f"fault {r.number} ({r.kind}): {r.error}" for r in records if r.error],
        )
    )
    print_faults(records)
    print_checks(checks)
    for letter in letters:
        console.print(
            f"[red]dead letter[/] {letter['where']} {letter['type']} {letter['subject']}: {letter['error']}",
            soft_wrap=True,
        )
    violations = sum(len(c.violations) for c in checks)
    summary.update(
        {
            "acknowledged_first": first["acked"],
            "failed_first": first["failed"],
            "no_answer_first": first["unknown"],
            "recorded_despite_error": applied_anyway,
            "never_acknowledged": len(never),
            "faults": [asdict(r) for r in records],
            "load_seconds": round(load_seconds, 1),
            "drain_seconds": round(drain_seconds, 1),
            "checks": [
                {"name": c.name, "expected": c.expected, "actual": c.actual, "violations": c.violations}
                for c in checks
            ],
            "violations": violations,
        }
    )
    return summary


def print_faults(records: list[FaultRecord]) -> None:
    table = Table(
        "#",
        "planned (s)",
        "started (s)",
        "fault",
        "back after (s)",
        "under load",
        "how",
        title="Faults injected",
    )
    for r in records:
        table.add_row(
            str(r.number),
            f"{r.planned_at:.1f}",
            f"{r.started_at:.1f}",
            r.kind,
            f"{r.back_after:.1f}",
            "yes" if r.under_load else "no",
            escape(r.error or r.detail),
        )
    console.print(table)


def print_checks(checks: list[Check]) -> None:
    table = Table("check", "expected", "actual", "result", title="Chaos checks")
    for c in checks:
        table.add_row(
            c.name,
            c.expected,
            c.actual,
            "[green]OK[/]" if c.ok else f"[bold red]{len(c.violations)} violation(s)[/]",
        )
    console.print(table)
    for c in checks:
        for v in c.violations:
            console.print(f"[red]✗ {c.name}:[/] {v}", soft_wrap=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="short", help="defaults for the options below"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="the fault schedule and the purchases derive from it"
    )
    parser.add_argument("--purchases", type=int, help="how many purchases (short 1,500, full 20,000)")
    parser.add_argument("--rate", type=float, help="purchases per second sent (short 20, full 35)")
    parser.add_argument("--fault-every", type=float, help="seconds between faults, ±25%% (short 4, full 5)")
    parser.add_argument("--customers", type=int, help="customers the purchases are spread over")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument(
        "--points-per-unit", type=int, default=3, help="the chaos program's rule: points per EUR"
    )
    parser.add_argument("--request-timeout", type=float, default=15.0, help="client timeout per request (s)")
    parser.add_argument(
        "--retry-timeout", type=float, help="how long to retry unacknowledged (s; short 120, full 900)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, help="how long to wait for the drain (s; short 300, full 1200)"
    )
    parser.add_argument(
        "--auth", choices=auth.MODES, default="auto", help="authentication (see bench.chaos.auth)"
    )
    parser.add_argument("--token", help="access token, sent as a bearer (else CRM_CHAOS_TOKEN)")
    parser.add_argument("--api-key", help="API key, sent as X-API-Key (else CRM_CHAOS_API_KEY)")
    parser.add_argument(
        "--var-dir", type=Path, default=REPO / "var" / "chaos", help="state dir (CRM_VAR_DIR)"
    )
    parser.add_argument("--pg-port", type=int, default=55532)
    parser.add_argument("--kafka-port", type=int, default=19092)
    parser.add_argument("--kafka-controller-port", type=int, default=19093)
    parser.add_argument(
        "--port-base", type=int, default=8100, help="gateway port; the services on the next four"
    )
    parser.add_argument("--keep", action="store_true", help="leave the topology running afterwards")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    for name, value in SIZES[args.size].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.auth_on = auth.resolve_mode(args.auth, args.token, args.api_key)
    try:
        topology = Topology(
            Path(args.var_dir).resolve(),
            args.pg_port,
            args.kafka_port,
            args.kafka_controller_port,
            args.port_base,
            auth.topology_env(args.auth_on),
        )
    except TopologyError as exc:
        console.print(f"[red]{exc}[/]")
        return 2

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    code = 2
    try:
        summary = asyncio.run(scenario(args, topology))
        summary["seconds"] = round(time.monotonic() - started, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(summary, indent=2, default=str))
        code = 1 if summary["violations"] else 0
        verdict = (
            "[bold green]PASS[/]" if code == 0 else f"[bold red]FAIL: {summary['violations']} violation(s)[/]"
        )
        console.print(
            f"{verdict} — seed {args.seed}, {args.purchases} purchases, {len(summary['faults'])} faults, "
            f"{summary['seconds']:.0f} s"
        )
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
    except Exception as exc:
        console.print_exception(max_frames=8)
        console.print(f"[red]the chaos run could not be carried out: {exc}[/]")
    finally:
        if args.keep:
            console.print(
                f"topology left running (stop it with CRM_VAR_DIR={topology.var_dir} ... deploy/down.sh)"
            )
        else:
            with console.status("stopping the chaos topology (deploy/down.sh) …"):
                topology.down()
    return code


if __name__ == "__main__":
    sys.exit(main())

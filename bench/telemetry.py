"""What tracing costs: requests per second of a real service endpoint, in-process, with each exporter.

    python -m bench.telemetry [--requests 2000] [--rounds 3]

The identity service runs in this process (SQLite under a temporary directory, authentication off,
the in-process bus) and is called through httpx's ASGI transport, so the figures are the service's own
work plus tracing, without sockets. The endpoint reads a customer (`GET /customers/{id}`) and the
write endpoint registers one (`POST /customers`: an outbox event stamped with the trace context).
Modes: `none` (the default: no provider, the middleware passes through), `console` (spans formatted
and written to /dev/null by the batch processor) and `memory` (kept in the in-memory exporter, which
is cleared between rounds). Rounds alternate the modes; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import IO

MODES = ("none", "console", "memory")


async def _run(requests: int, rounds: int, devnull: IO[str]) -> dict[str, dict[str, float]]:
    os.environ["CRM_AUTH_ENABLED"] = "false"  # a benchmark of tracing, not of token checks
    os.environ.pop("CRM_OTEL_EXPORTER", None)
    import httpx

    from services.identity import app as identity_app
    from services.identity.settings import load_settings
    from shared import telemetry
    from shared.logging import configure_logging

    configure_logging("WARNING", json=False)
    telemetry.console_stream = devnull
    best: dict[str, dict[str, float]] = {mode: {"read": 0.0, "write": 0.0} for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        runtime = identity_app.build(load_settings(var_dir=Path(tmp)), None)
        async with (
            runtime.app.router.lifespan_context(runtime.app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=runtime.app), base_url="http://identity"
            ) as client,
        ):
            created = await client.post(
                "/customers", json={"given_name": "Ana", "family_name": "Ruiz", "email": "ana@example.org"}
            )
            created.raise_for_status()
            path = f"/customers/{created.json()['customer']['id']}"
            serial = 0
            for round_ in range(rounds + 1):  # round 0 warms up
                for mode in MODES:
                    telemetry.configure(runtime.name, mode)
                    started = time.perf_counter()
                    for _ in range(requests):
                        (await client.get(path)).raise_for_status()
                    read = requests / (time.perf_counter() - started)
                    writes = max(requests // 4, 1)
                    started = time.perf_counter()
                    for _ in range(writes):
                        serial += 1
                        response = await client.post(
                            "/customers",
                            json={"given_name": "B", "family_name": "C", "email": f"b{serial}@example.org"},
                        )
                        response.raise_for_status()
                    write = writes / (time.perf_counter() - started)
                    await runtime.relay.drain()
                    telemetry.memory_exporter().clear()
                    if round_ > 0:
                        best[mode]["read"] = max(best[mode]["read"], read)
                        best[mode]["write"] = max(best[mode]["write"], write)
            telemetry.configure(runtime.name, "none")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="reads per round and mode (writes: 1/4)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        best = asyncio.run(_run(args.requests, args.rounds, devnull))
    base = best["none"]
    print(f"{'exporter':<10} {'reads/s':>10} {'vs none':>8} {'writes/s':>10} {'vs none':>8}")
    for mode, figures in best.items():
        print(
            f"{mode:<10} {figures['read']:>10.0f} {figures['read'] / base['read']:>8.2f}"
            f" {figures['write']:>10.0f} {figures['write'] / base['write']:>8.2f}"
        )


if __name__ == "__main__":
    main()

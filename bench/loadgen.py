"""The load generator: HTTP calls sent from a process of its own (aiohttp, asyncio), closed or open loop.

aiohttp, not httpx: on this machine httpx spends ~1.6 ms of CPU on each call it sends and aiohttp
~0.2 ms, and the generator shares the machine with the system it measures — with httpx it took half
a core at 300 calls/s and, in open loop at 500/s, became the bottleneck itself.

* closed loop (`closed`): `concurrency` clients, each sending its next call when the previous one
  answered, for `seconds` or until the calls run out — the most the system under test takes;
* open loop (`open_loop`): every call has its intended start time (a constant arrival rate, mixed
  operations), sent then whether or not earlier calls answered; latency is measured from the intended
  start, so a stalled server is not hidden by the generator waiting for it (no coordinated omission).

`run_in_process` runs either in a fresh (spawned) process and returns the samples, so the generator's
own CPU is not taken from the process measuring catch-up, consumer lag and outbox backlog. Every call
carries the headers of `auth_headers()` (`BENCH_AUTH_HEADER="Name: value"`, e.g. an API key).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    op: str
    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    capture: bool = False  # keep the answer's "id" (e.g. the purchase id) in the sample


# One sample: (op, wall-clock time the call was meant to start, latency in s, HTTP status, captured id)
Sample = tuple[str, float, float, int, str | None]


def auth_headers(value: str | None = None) -> dict[str, str]:
    """The authentication header every call carries: `value` or `BENCH_AUTH_HEADER`, as "Name: value"."""
    raw = value if value is not None else os.environ.get("BENCH_AUTH_HEADER", "")
    if not raw.strip():
        return {}
    name, _, content = raw.partition(":")
    return {name.strip(): content.strip()}


async def _send(client: aiohttp.ClientSession, call: Call) -> tuple[int, str | None]:
    try:
        async with client.request(
            call.method, call.path, json=call.json, headers=call.headers or None
        ) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0, None
    ident = None
    if call.capture and status < 300:
        try:
            ident = str(json.loads(body).get("id"))
        except ValueError:
            ident = None
    return status, ident


def _client(base_url: str, headers: dict[str, str], connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
    )


async def _closed(
    base_url: str, calls: list[Call], concurrency: int, seconds: float | None, headers: dict[str, str]
) -> list[Sample]:
    samples: list[Sample] = []
    it = iter(calls)
    async with _client(base_url, headers, concurrency) as client:
        deadline = time.perf_counter() + seconds if seconds else float("inf")

        async def worker() -> None:
            for call in it:
                if time.perf_counter() >= deadline:
                    return
                wall, t0 = time.time(), time.perf_counter()
                status, ident = await _send(client, call)
                samples.append((call.op, wall, time.perf_counter() - t0, status, ident))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def _open(
    base_url: str, schedule: list[tuple[float, Call]], connections: int, headers: dict[str, str]
) -> list[Sample]:
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    async with _client(base_url, headers, connections) as client:
        start_wall, start = time.time(), time.perf_counter() + 0.2

        # At most `connections` calls in flight: the others wait here, their wait counted in their latency
        # (measured from the intended start). Thousands of waiters inside the client's pool cost it CPU
        # and turned the generator, not the system, into the bottleneck.
        slots = asyncio.Semaphore(connections)

        async def one(offset: float, call: Call) -> None:
            async with slots:
                status, ident = await _send(client, call)
            samples.append(
                (call.op, start_wall + 0.2 + offset, time.perf_counter() - (start + offset), status, ident)
            )

        for offset, call in schedule:
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(offset, call))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return samples


def closed(
    base_url: str, calls: list[Call], concurrency: int, seconds: float | None, headers: dict[str, str]
) -> list[Sample]:
    return asyncio.run(_closed(base_url, calls, concurrency, seconds, headers))


def open_loop(
    base_url: str, schedule: list[tuple[float, Call]], connections: int, headers: dict[str, str]
) -> list[Sample]:
    return asyncio.run(_open(base_url, schedule, connections, headers))


def run_in_process(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`fn(*args)` in a fresh process; await the result from the event loop meanwhile free to sample."""
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    future.add_done_callback(lambda _: executor.shutdown(wait=False))
    return future


def constant_rate(calls: list[Call], rate: float, offset: float = 0.0) -> list[tuple[float, Call]]:
    """`calls` spread evenly at `rate` per second (a constant arrival rate)."""
    return [(offset + i / rate, call) for i, call in enumerate(calls)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(samples: list[Sample], seconds: float | None = None) -> dict[str, dict[str, Any]]:
    """Per operation: count, errors, throughput (per s of the run), median / p95 / p99 latency in ms."""
    out: dict[str, dict[str, Any]] = {}
    if not samples:
        return out
    span = seconds or (max(s[1] + s[2] for s in samples) - min(s[1] for s in samples))
    for op in sorted({s[0] for s in samples}):
        mine = [s for s in samples if s[0] == op]
        ok = [s[2] for s in mine if 200 <= s[3] < 300]
        statuses: dict[str, int] = {}
        for sample in mine:
            statuses[str(sample[3])] = statuses.get(str(sample[3]), 0) + 1
        out[op] = {
            "count": len(mine),
            "errors": len(mine) - len(ok),
            "statuses": statuses,  # 0: no answer (connection error or 60 s timeout)
            "per_second": len(ok) / span if span > 0 else float("nan"),
            "median_ms": percentile(ok, 0.5) * 1000,
            "p95_ms": percentile(ok, 0.95) * 1000,
            "p99_ms": percentile(ok, 0.99) * 1000,
        }
    return out

"""Smoke check of `make bench`: the end-to-end workload and the report renderer still work.

Runs `bench/run.sh` with `BENCH_ONLY=e2e BENCH_SIZE=tiny` as a subprocess, on a private topology of
its own (its own var directory, PostgreSQL, Kafka and service ports, all stopped by the script's trap),
then checks the report has every section and every figure its columns. Not a timing gate: the figures
of a tiny run on a busy machine mean nothing.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_base() -> int:
    for _ in range(200):
        base = random.randrange(8400, 8990, 10)
        if all(_free(base + i) for i in range(10)):
            return base
    raise RuntimeError("no 10 free consecutive ports between 8400 and 9000")


def test_bench_e2e_and_report(tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.md"
    env = {
        **os.environ,
        "BENCH_ONLY": "e2e",
        "BENCH_SIZE": "tiny",
        "BENCH_OUT": str(out),
        "BENCH_REPORT": str(report),
        "CRM_VAR_DIR": str(tmp_path / "var"),
        "PG_PORT": str(_free_port()),
        "KAFKA_PORT": str(_free_port()),
        "KAFKA_CONTROLLER_PORT": str(_free_port()),
        "CRM_PORT_BASE": str(_port_base()),
    }
    done = subprocess.run(
        ["bench/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    text = report.read_text()
    for section in (
        "# Benchmark report",
        "## Summary",
        "## End to end under load",
        "### Parts",
        "### Consumer lag and outbox backlog",
    ):
        assert section in text, section
    for figure in (
        "Bulk purchases end to end",
        "Single purchases through the gateway",
        "Gateway throughput / direct to interactions",
        "Gateway added median latency",
        "Customer 360 at",
        "Ingest to points",
        "segment_entered on Kafka",
        "Mixed workload: redemption",
        "Mixed workload: segment_lookup",
        "aiokafka produce + consume",
        "PostgreSQL COPY",
        "empty FastAPI",
    ):
        assert figure in text, figure
    for chart in (
        "e2e_lag.png",
        "e2e_outbox.png",
        "e2e_catchup.png",
        "e2e_mixed_latency.png",
        "e2e_parts.png",
    ):
        assert (out / "charts" / chart).stat().st_size > 0, chart

    document = json.loads((out / "report.json").read_text())
    figures = document["benchmarks"]["e2e"]["figures"]
    assert figures
    segment = next(f for f in figures if "segment_entered on Kafka" in f["name"])
    assert segment["value"] is not None, segment
    for figure in figures:
        assert {"name", "unit", "value", "baseline", "ratio", "target", "met"} <= set(figure)
        if figure["target"] is not None:
            assert figure["met"] in (True, False)
    # The load generator reached every operation of the mix.
    raw = json.loads((out / "e2e.json").read_text())["raw"]
    assert set(raw["mixed"]["operations"]) == {
        "customer_360",
        "purchase",
        "purchase_bulk",
        "interaction",
        "complaint",
        "redemption",
        "segment_lookup",
    }
    assert raw["bulk"]["failed_requests"] == 0
    # Every acknowledged purchase of the segment phase made its customer enter the segment, on Kafka.
    assert raw["segment"]["acknowledged"] > 0
    assert raw["segment"]["observed"] == raw["segment"]["acknowledged"], raw["segment"]

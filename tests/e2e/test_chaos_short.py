"""The short chaos run (`make chaos`): purchases through the gateway while each service, the gateway and
the Kafka broker are killed with SIGKILL and PostgreSQL restarts, then every purchase is checked to be
stored, to have earned its points and to be counted in the features exactly once.

It runs on a topology of its own (PostgreSQL :55532, Kafka :19092, services :8100-8104, state in
var/chaos-test), never the shared servers, and stops it at the end. About three minutes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PORTS = (55532, 19092, 19093, 8100, 8101, 8102, 8103, 8104)


def in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_chaos_short_run_applies_every_purchase_exactly_once(tmp_path: Path) -> None:
    busy = [port for port in PORTS if in_use(port)]
    if busy:
        pytest.skip(f"ports of the chaos topology in use (another chaos run?): {busy}")
    summary = tmp_path / "chaos.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--size",
            "short",
            "--seed",
            "1",
            "--var-dir",
            str(REPO / "var" / "chaos-test"),
            "--out",
            str(summary),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    print(done.stdout[-12000:])  # the fault schedule, the faults injected and the checks table (pytest -s)
    assert done.returncode == 0, (
        f"chaos run failed ({done.returncode}):\n{done.stdout[-12000:]}\n{done.stderr[-4000:]}"
    )
    assert summary.exists()

"""The chaos run's own distributed topology: a PostgreSQL cluster, a Kafka broker and the five processes,
on ports and in a state directory of their own (never the shared PostgreSQL on 55432 or Kafka on 9092).

Everything is started, crashed and restarted through the deploy scripts, exactly as `make up` does:
`deploy/up.sh` (all, or one process with `service NAME`), `deploy/kafka.sh kill9|start`,
`deploy/postgres.sh restart`, `deploy/down.sh`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "interactions", "segmentation", "loyalty")
PROCESSES = (*SERVICES, "gateway")
OFFSETS = {"gateway": 0, "identity": 1, "interactions": 2, "segmentation": 3, "loyalty": 4}


class TopologyError(RuntimeError):
    pass


@dataclass(frozen=True)
class Topology:
    var_dir: Path = field(default_factory=lambda: REPO / "var" / "chaos")
    pg_port: int = 55532
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    port_base: int = 8100
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. CRM_AUTH_ENABLED

    def __post_init__(self) -> None:
        shared = {55432: "PostgreSQL", 9092: "Kafka", 9093: "Kafka's controller", 8000: "the gateway"}
        for port in (self.pg_port, self.kafka_port, self.kafka_controller_port, self.port_base):
            if port in shared:
                raise TopologyError(f"port {port} is the shared {shared[port]}: the chaos run needs its own")
        if self.var_dir.resolve() == (REPO / "var").resolve():
            raise TopologyError("the chaos run needs its own CRM_VAR_DIR, not var/")

    # -- addresses -----------------------------------------------------------------------------------

    def port(self, process: str) -> int:
        return self.port_base + OFFSETS[process]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port('gateway')}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def dsn(self, service: str) -> str:
        """asyncpg DSN of a service's database."""
        return f"postgresql://crm:crm@127.0.0.1:{self.pg_port}/crm_{service}"

    def env(self) -> dict[str, str]:
        """The environment the deploy scripts (and `crm` commands against this topology) run with."""
        env = dict(os.environ)
        env.update(
            {
                "CRM_VAR_DIR": str(self.var_dir.resolve()),
                "PG_PORT": str(self.pg_port),
                "KAFKA_PORT": str(self.kafka_port),
                "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
                "CRM_PORT_BASE": str(self.port_base),
                "CRM_DB_PREFIX": "crm_",  # the names dsn() uses, whatever the caller exported
                # What deploy/up.sh exports to the services, for `crm` commands run from here.
                "CRM_BUS": "kafka",
                "CRM_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            }
        )
        for service in SERVICES:
            env[f"CRM_{service.upper()}_DATABASE_URL"] = (
                f"postgresql+asyncpg://crm:crm@127.0.0.1:{self.pg_port}/crm_{service}"
            )
        env.update(self.extra_env)
        return env

    # -- running the deploy scripts ------------------------------------------------------------------

    def script(
        self, *args: str, timeout: float = 180.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a deploy script with this topology's environment; its output goes to var/chaos/deploy.log."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with (self.var_dir / "deploy.log").open("a") as log:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            done = subprocess.run(
                [str(REPO / args[0]), *args[1:]],
                cwd=REPO,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        if check and done.returncode != 0:
            raise TopologyError(f"{' '.join(args)} failed ({done.returncode}); see {self.var_dir}/deploy.log")
        return done

    def up(self, *, fresh: bool = True) -> None:
        """Start the topology (from empty state when `fresh`: databases, topics and logs of earlier runs
        are removed first)."""
        if fresh:
            self.down()
            for sub in ("postgres", "kafka", "log", "run"):
                shutil.rmtree(self.var_dir / sub, ignore_errors=True)
            (self.var_dir / "deploy.log").unlink(missing_ok=True)
        # Kafka and PostgreSQL side by side (deploy/up.sh would start them one after the other).
        with ThreadPoolExecutor(2) as pool:
            started = [
                pool.submit(self.script, "deploy/kafka.sh", "start", timeout=240),
                pool.submit(self.script, "deploy/postgres.sh", "start", timeout=120),
            ]
            for future in started:
                future.result()
        self.script("deploy/up.sh", timeout=300)

    def down(self) -> None:
        if self.var_dir.exists():
            self.script("deploy/down.sh", timeout=180, check=False)

    # -- faults --------------------------------------------------------------------------------------

    def pid(self, process: str) -> int | None:
        path = self.var_dir / "run" / f"{process}.pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill9(self, process: str) -> int:
        """SIGKILL one service process (or the gateway); returns its pid."""
        pid = self.pid(process)
        if pid is None or not _alive(pid):
            raise TopologyError(f"{process} is not running")
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)
        return pid

    def restart(self, process: str) -> None:
        """Start a killed process again the way deploy/up.sh starts it; returns once it is ready."""
        self.script("deploy/up.sh", "service", process, timeout=120)

    def kafka_kill9(self) -> None:
        self.script("deploy/kafka.sh", "kill9", timeout=30)

    def kafka_start(self) -> None:
        self.script("deploy/kafka.sh", "start", timeout=180)

    def postgres_stop(self) -> None:
        self.script("deploy/postgres.sh", "stop", timeout=120)

    def postgres_start(self) -> None:
        self.script("deploy/postgres.sh", "start", timeout=120)

    def dead_processes(self) -> list[str]:
        return [p for p in PROCESSES if (pid := self.pid(p)) is None or not _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            raise TopologyError(f"pid {pid} survived SIGKILL")
        time.sleep(0.05)

"""End to end in distributed mode: each service its own process (`crm serve`), real Kafka and
PostgreSQL (a fresh database per service and one for the gateway), the slice driven through the
gateway over HTTP with authentication on: a real login, services verifying tokens with the JWKS they
fetch from the gateway, and refusing direct calls without one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts.loyalty import POINTS
from shared.messaging.kafka import KafkaBus
from tests.support.auth import ADMIN_PASSWORD, TestKeys, bearer, login
from tests.support.servers import KAFKA, PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url

pytestmark = pytest.mark.auth

SERVICES = ("identity", "interactions", "segmentation", "loyalty")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.ports = {name: free_port() for name in (*SERVICES, "gateway")}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.databases: dict[str, str] = {}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(
            {
                "CRM_BUS": "kafka",
                "CRM_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                "CRM_LOG_LEVEL": "INFO",
                "CRM_ENVIRONMENT": "test",
                "CRM_OUTBOX_POLL_INTERVAL": "0.2",
            }
        )
        for name in SERVICES:
            env[f"CRM_{name.upper()}_DATABASE_URL"] = sqlalchemy_url(PG_ADMIN_DSN, self.databases[name])
            env[f"CRM_GATEWAY_{name.upper()}_URL"] = f"http://127.0.0.1:{self.ports[name]}"
        env["CRM_INTERACTIONS_IDENTITY_URL"] = f"http://127.0.0.1:{self.ports['identity']}"
        env["CRM_AUTH_ENABLED"] = "true"
        env["CRM_GATEWAY_DATABASE_URL"] = sqlalchemy_url(PG_ADMIN_DSN, self.databases["gateway"])
        env["CRM_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        env["CRM_AUTH_JWKS_URL"] = f"{self.gateway_url}/auth/jwks.json"
        env["CRM_AUTH_JWKS_MIN_REFETCH_SECONDS"] = "1"
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", name, "--port", str(self.ports[name])],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
async def cluster(tmp_path: Path, kafka: str) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path)
    for name in (*SERVICES, "gateway"):
        cluster.databases[name] = await create_database(f"e2e_{name}")
    try:
        for name in (*SERVICES, "gateway"):
            cluster.start(name)
        async with httpx.AsyncClient(base_url=cluster.gateway_url) as client:
            try:
                async with asyncio.timeout(90):
                    while True:
                        try:
                            if (await client.get("/ready")).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        for name, process in cluster.processes.items():
                            assert process.poll() is None, f"{name} exited early:\n{cluster.logs()}"
                        await asyncio.sleep(0.3)
            except TimeoutError:
                pytest.fail(f"the cluster did not become ready:\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.stop()
        for database in cluster.databases.values():
            await drop_database(database)


async def points_topic_reader(kafka: str) -> AIOKafkaConsumer:
    """A reader of loyalty's points topic positioned at its current end."""
    reader = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await reader.start()
    partitions = await KafkaBus(kafka)._partitions(POINTS.name)
    tps = [TopicPartition(POINTS.name, p) for p in partitions]
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    for tp in tps:
        await reader.position(tp)
    return reader


async def test_slice_across_processes(cluster: Cluster) -> None:
    reader = await points_topic_reader(KAFKA)
    try:
        async with httpx.AsyncClient(base_url=cluster.gateway_url, timeout=10) as client:
            assert (await client.get("/api/identity/attribute-definitions")).status_code == 401
            client.headers["authorization"] = f"Bearer {await login(client)}"
            created = await client.post(
                "/api/identity/customers", json={"given_name": "Jonas", "email": "jonas@example.de"}
            )
            assert created.status_code == 201, created.text
            customer_id = created.json()["customer"]["id"]
            # Posted at once: interactions may not have the registration event yet, and asks identity.
            purchase = await client.post(
                "/api/interactions/purchases",
                json={
                    "customer_id": customer_id,
                    "currency": "EUR",
                    "external_id": "d-1",
                    "lines": [{"sku": "S", "quantity": 3, "unit_price_minor": 1050}],
                },
                headers={"x-request-id": "e2e-" + customer_id},
            )
            assert purchase.status_code == 201, purchase.text
            assert purchase.headers["x-request-id"] == "e2e-" + customer_id

            async with asyncio.timeout(30):
                while True:
                    balance = await client.get(f"/api/loyalty/members/{customer_id}/balance")
                    features = await client.get(f"/api/segmentation/customers/{customer_id}/features")
                    if (
                        balance.status_code == 200
                        and features.status_code == 200
                        and features.json()["purchase_count"] == 1
                    ):
                        break
                    await asyncio.sleep(0.1)
            assert balance.json()["points"] == 31
            assert features.json()["spend"] == [{"currency": "EUR", "purchase_count": 1, "total_minor": 3150}]

            document = (await client.get("/openapi.json")).json()
            assert "/api/loyalty/members/{customer_id}/balance" in document["paths"]
            assert (await client.get(f"/api/identity/customers/{customer_id}")).json()[
                "email"
            ] == "jonas@example.de"

        # loyalty's points_earned event, keyed by the customer, carries the purchase request's id:
        # the id followed the request from the gateway, through Kafka, into another service's event.
        async with asyncio.timeout(20):
            found = None
            while found is None:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.key == customer_id.encode():
                            found = dict(record.headers)
        assert found["ce_type"] == b"crm.loyalty.points_earned.v1"
        assert found["ce_requestid"] == ("e2e-" + customer_id).encode()
    finally:
        await reader.stop()


async def test_services_verify_with_the_gateways_jwks_and_refuse_direct_calls(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.gateway_url, timeout=10) as gateway:
        token = await login(gateway)
        paths = {
            "identity": "/attribute-definitions",
            "interactions": "/complaints",
            "segmentation": "/segments",
            "loyalty": "/programs",
        }
        for name, path in paths.items():
            async with httpx.AsyncClient(base_url=cluster.url(name), timeout=10) as direct:
                # Inside the network, straight to the service: no token, no entry.
                refused = await direct.get(path)
                assert refused.status_code == 401, (name, refused.text)
                assert refused.headers["www-authenticate"].startswith("Bearer")
                forged = await direct.get(path, headers=bearer(TestKeys().token(roles=("admin",))))
                assert forged.status_code == 401, name
                # The gateway's token verifies: the service fetched the gateway's JWKS.
                accepted = await direct.get(path, headers=bearer(token))
                assert accepted.status_code == 200, (name, accepted.text)

        # After a rotation the services meet an unknown kid and fetch the JWKS again.
        admin = bearer(token)
        rotated = await gateway.post("/api/admin/signing-keys/rotate", headers=admin)
        assert rotated.status_code == 200
        await asyncio.sleep(1.1)  # CRM_AUTH_JWKS_MIN_REFETCH_SECONDS=1 in this cluster
        fresh = await login(gateway)
        async with httpx.AsyncClient(base_url=cluster.url("loyalty"), timeout=10) as direct:
            assert (await direct.get("/programs", headers=bearer(fresh))).status_code == 200
            assert (await direct.get("/programs", headers=admin)).status_code == 200  # old key still valid

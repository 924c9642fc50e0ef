"""Insights through the gateway on the embedded platform (customers and purchases recorded through the
identity and interactions APIs): micro-segments found and labelled, next-best-action playbooks
validated, evaluated with their path and learned from a segment; and the same on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from services.platform import Platform, build_platform
from services.segmentation.app import build
from services.segmentation.insights import service
from services.segmentation.insights.schemas import ClusterRunIn, PlaybookIn, PlaybookLearnIn
from services.segmentation.models import CustomerFeatures, metadata
from services.segmentation.segments import service as segments
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from shared.messaging.bus import InProcessBus
from tests.unit.segmentation.test_insights import NOW, TREE, Db, two_groups

API = "/api/segmentation"


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)  # segmentation's app includes the insight routers


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        yield c


async def customer(gw: httpx.AsyncClient, email: str) -> str:
    response = await gw.post(
        "/api/identity/customers", json={"given_name": "Test", "family_name": "Insights", "email": email}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def purchase(gw: httpx.AsyncClient, customer_id: str, minor: int, when: datetime | None = None) -> None:
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "currency": "EUR",
        "channel": "store",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": minor}],
    }
    if when is not None:
        body["occurred_at"] = when.isoformat()
    response = await gw.post("/api/interactions/purchases", json=body)
    assert response.status_code == 201, response.text


@pytest.fixture
async def shoppers(gw: httpx.AsyncClient, platform: Platform) -> dict[str, list[str]]:
    """6 valuable customers (200,000 each, today: 2 × 100,000 or 4 × 50,000) and 12 casual ones (one
    purchase of 1,000, 150 to 205 days ago)."""
    now = datetime.now(UTC)
    vips = [await customer(gw, f"vip{i}@example.com") for i in range(6)]
    casual = [await customer(gw, f"casual{i}@example.com") for i in range(12)]
    for i, c in enumerate(vips):
        for _ in range(2 if i % 2 else 4):
            await purchase(gw, c, 100_000 if i % 2 else 50_000)
    for i, c in enumerate(casual):
        await purchase(gw, c, 1_000, now - timedelta(days=150 + 5 * i))
    await platform.drain()
    return {"vips": vips, "casual": casual}


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


async def test_micro_segments_through_the_gateway(
    gw: httpx.AsyncClient, shoppers: dict[str, list[str]]
) -> None:
    assert (await gw.get(f"{API}/clusters/runs/latest")).status_code == 404
    started = await gw.post(f"{API}/clusters/runs", json={"k": 2, "random_state": 1})
    assert started.status_code == 201, started.text
    run = started.json()
    assert started.headers["Location"] == f"/clusters/runs/{run['id']}"
    assert (run["k"], run["population"], run["currency"], run["sizes"]) == (2, 18, "EUR", [12, 6])
    valuable = run["clusters"][1]
    assert valuable["label"] == f"High spend{valuable['label'].removeprefix('High spend')}"
    assert valuable["label"].endswith("— 33% of customers")
    assert valuable["features"]["monetary_minor"]["mean"] == 200_000
    assert valuable["features"]["frequency"]["mean"] == 3
    assert run["clusters"][0]["label"].startswith("Low spend")

    for c in shoppers["vips"]:
        mine = await gw.get(f"{API}/customers/{c}/cluster")
        assert mine.status_code == 200, mine.text
        assert (mine.json()["cluster"], mine.json()["label"]) == (1, valuable["label"])
    casual = await gw.get(f"{API}/customers/{shoppers['casual'][0]}/cluster", params={"run": run["id"]})
    assert casual.json()["cluster"] == 0
    assert (await gw.get(f"{API}/customers/nobody/cluster")).status_code == 404

    latest = await gw.get(f"{API}/clusters/runs/latest")
    assert latest.json() == run
    assert (await gw.get(f"{API}/clusters/runs/{run['id']}")).json() == run
    assert (await gw.get(f"{API}/clusters/runs/nope")).status_code == 404
    again = (await gw.post(f"{API}/clusters/runs", json={"k": 2, "random_state": 1})).json()
    assert again["sizes"] == run["sizes"]
    assert again["clusters"] == run["clusters"]

    too_few = await gw.post(f"{API}/clusters/runs", json={"k": 7})
    assert fields(too_few) == ["body.k"]
    assert "too few customers for k=7: 18" in too_few.json()["detail"]
    assert fields(await gw.post(f"{API}/clusters/runs", json={"features": ["frequency", "spend"]})) == [
        "body.features.1"
    ]
    assert fields(await gw.post(f"{API}/clusters/runs", json={"k": 1})) == ["body.k"]
    assert fields(await gw.post(f"{API}/clusters/runs", json={"k_range": [4, 2]})) == ["body.k_range.1"]
    assert fields(await gw.post(f"{API}/clusters/runs", json={"currency": "eur"})) == ["body.currency"]
    listed = await gw.get(f"{API}/clusters/features")
    assert "monetary_minor" in [f["name"] for f in listed.json()["items"]]


async def test_playbooks_through_the_gateway(gw: httpx.AsyncClient, shoppers: dict[str, list[str]]) -> None:
    bad_tree = {
        "condition": {"field": "purchase_count", "op": ">", "value": 1},
        "then": {
            "condition": {"field": "net_spend_minor", "op": ">=", "value": 1},
            "then": {"action": "call"},
            "else": {"condition": {"field": "net_spend", "op": ">", "value": 3}, "then": {"action": "a"}},
        },
        "else": {"action": "no_action"},
    }
    bad = await gw.post(f"{API}/playbooks", json={"name": "Bad", "tree": bad_tree})
    assert fields(bad) == ["body.tree.then.else.condition.field", "body.tree.then.else.else"]
    assert "unknown field 'net_spend'; did you mean 'net_spend_minor'" in bad.json()["errors"][0]["message"]

    created = await gw.post(f"{API}/playbooks", json={"name": "Retention", "tree": TREE})
    assert created.status_code == 201, created.text
    playbook = created.json()
    assert (playbook["version"], playbook["source"]) == (1, "staff")
    assert (await gw.post(f"{API}/playbooks", json={"name": "Retention", "tree": TREE})).status_code == 409
    assert [p["id"] for p in (await gw.get(f"{API}/playbooks")).json()["items"]] == [playbook["id"]]
    assert (await gw.get(f"{API}/playbooks/{playbook['id']}")).json() == playbook

    casual = shoppers["casual"][-1]  # 205 days, 1,000
    decided = await gw.get(f"{API}/customers/{casual}/next-best-action", params={"playbook": playbook["id"]})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["action"], body["params"], body["leaf"]) == (
        "win_back_offer",
        {"discount_percent": 15},
        "tree.then.else",
    )
    assert [(s["node"], s["observed"], s["result"]) for s in body["path"]] == [
        ("tree", {"days_since_last_purchase": 205}, True),
        ("tree.then", {"net_spend_minor": 1_000}, False),
    ]
    vip = await gw.get(
        f"{API}/customers/{shoppers['vips'][0]}/next-best-action", params={"playbook": playbook["id"]}
    )
    assert vip.json()["action"] == "no_action"
    assert [s["result"] for s in vip.json()["path"]] == [False, False]
    missing = await gw.get(f"{API}/customers/{casual}/next-best-action", params={"playbook": "nope"})
    assert missing.status_code == 404
    assert fields(await gw.get(f"{API}/customers/{casual}/next-best-action")) == ["query.playbook"]

    edited = dict(TREE, then={"action": "win_back_offer", "params": {"discount_percent": 20}})
    replaced = await gw.put(f"{API}/playbooks/{playbook['id']}", json={"name": "Retention", "tree": edited})
    assert replaced.json()["version"] == 2
    again = await gw.get(f"{API}/customers/{casual}/next-best-action", params={"playbook": playbook["id"]})
    assert (again.json()["params"], again.json()["playbook_version"]) == ({"discount_percent": 20}, 2)
    bad_put = await gw.put(
        f"{API}/playbooks/{playbook['id']}",
        json={"name": "Retention", "tree": dict(TREE, **{"else": {"action": "No Action"}})},
    )
    assert fields(bad_put) == ["body.tree.else.action"]

    # Learned: a tree that explains a segment reproduces its rule, in original units.
    segment = await gw.post(
        f"{API}/segments",
        json={"name": "Big spenders", "rule": {"field": "net_spend_minor", "op": ">=", "value": 100_000}},
    )
    assert segment.status_code == 201, segment.text
    segment_id = segment.json()["segment"]["id"]
    learn = {
        "name": "Big spender look-alikes",
        "target": "segment",
        "segment_id": segment_id,
        "features": ["net_spend_minor", "purchase_count", "days_since_last_purchase"],
        "actions": {"true": {"action": "vip_invitation", "params": {"tier": "gold"}}, "false": "no_action"},
        "max_depth": 2,
        "min_samples_leaf": 1,
    }
    learned = await gw.post(f"{API}/playbooks/learn", json=learn)
    assert learned.status_code == 201, learned.text
    result = learned.json()
    assert result["training"]["accuracy"] == 1.0
    assert (result["training"]["samples"], result["training"]["positives"]) == (18, 6)
    tree = result["tree"]
    assert tree["condition"]["op"] == "<="
    assert tree["condition"]["field"] in learn["features"]
    assert isinstance(tree["condition"]["value"], int)  # integer fields keep integer thresholds
    learned_id = result["playbook"]["id"]
    for c in shoppers["vips"] + shoppers["casual"]:
        answer = await gw.get(f"{API}/customers/{c}/next-best-action", params={"playbook": learned_id})
        assert answer.json()["action"] == ("vip_invitation" if c in shoppers["vips"] else "no_action")
    assert fields(await gw.post(f"{API}/playbooks/learn", json=learn | {"segment_id": "nope"})) == [
        "body.segment_id"
    ]
    assert fields(await gw.post(f"{API}/playbooks/learn", json=learn | {"target": "loyal"})) == [
        "body.target"
    ]
    dry = await gw.post(f"{API}/playbooks/learn", json=learn | {"save": False})
    assert (dry.json()["playbook"], dry.json()["tree"]) == (None, tree)
    assert (await gw.delete(f"{API}/playbooks/{learned_id}")).status_code == 204
    assert (await gw.get(f"{API}/playbooks/{learned_id}")).status_code == 404


def test_every_insight_endpoint_is_documented(platform: Platform) -> None:
    spec = platform.runtimes["segmentation"].app.openapi()
    expected = {
        ("/clusters/runs", "post"),
        ("/clusters/runs/latest", "get"),
        ("/clusters/runs/{run_id}", "get"),
        ("/customers/{customer_id}/cluster", "get"),
        ("/playbooks", "post"),
        ("/playbooks", "get"),
        ("/playbooks/learn", "post"),
        ("/playbooks/{playbook_id}", "get"),
        ("/playbooks/{playbook_id}", "put"),
        ("/customers/{customer_id}/next-best-action", "get"),
    }
    for path, method in expected:
        operation = spec["paths"][path][method]
        assert operation["summary"], (path, method)
        assert operation.get("description"), (path, method)
    for path in ("/clusters/runs", "/playbooks", "/playbooks/learn"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["examples"], path
    assert "404" in spec["paths"]["/playbooks/{playbook_id}"]["get"]["responses"]


async def test_insights_on_postgresql_match_sqlite(tmp_path: Path, pg_database: str) -> None:
    """Migrations up to 0005 on PostgreSQL, assignments written by COPY, decisions compiled for
    PostgreSQL: the same run (same seed) gives the same clusters as on SQLite, and playbooks evaluate
    and learn the same way."""
    rows, vips, casual = two_groups()
    sqlite = Db(f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}")
    async with sqlite.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await sqlite.customers(rows)
    body = ClusterRunIn(k_range=[2, 4], random_state=5)
    on_sqlite = await service.run_clusters(sqlite.uow(), body, now=NOW)
    sqlite_assigned = await sqlite.assignments(on_sqlite.id)
    await sqlite.engine.dispose()

    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    try:
        async with runtime.uow() as uow:
            await uow.session.execute(insert(CustomerFeatures), rows)
            await uow.commit()
        run = await service.run_clusters(runtime.uow(), body, now=NOW)
        assert (run.k, run.sizes) == (on_sqlite.k, on_sqlite.sizes)
        assert [c.label for c in run.clusters] == [c.label for c in on_sqlite.clusters]
        pg = Db.__new__(Db)
        pg.uow = runtime.uow
        assert await pg.assignments(run.id) == sqlite_assigned
        assert len(sqlite_assigned) == 36

        playbook = await service.create_playbook(runtime.uow(), PlaybookIn(name="Retention", tree=TREE))
        decided = await service.next_best_action(runtime.uow(), casual[0], playbook.id, now=NOW)
        assert decided.action == "win_back_offer"
        assert decided.path[0].observed == {"days_since_last_purchase": 150}
        vip = await service.next_best_action(runtime.uow(), vips[0], playbook.id, now=NOW)
        assert (vip.action, [s.result for s in vip.path]) == ("no_action", [False, False])

        big = await segments.create(
            runtime.uow(),
            SegmentIn(name="Big", rule={"field": "purchase_count", "op": ">=", "value": 3}),
        )
        learned = await service.learn_playbook(
            runtime.uow(),
            PlaybookLearnIn(
                name="Frequent (learned)",
                target="segment",
                segment_id=big.segment.id,
                features=["purchase_count", "net_spend_minor"],
                actions={"true": "thank_you_gift", "false": "no_action"},
                min_samples_leaf=1,
            ),
            now=NOW,
        )
        assert learned.tree["condition"] == {"field": "purchase_count", "op": "<=", "value": 3}
        assert learned.playbook is not None
        for i, c in enumerate(vips):
            answer = await service.next_best_action(runtime.uow(), c, learned.playbook.id, now=NOW)
            assert answer.action == ("no_action" if i % 2 else "thank_you_gift")
    finally:
        await runtime.stop()

"""Segmentation analytics through the embedded platform: purchases and refunds recorded through the
gateway, figures (JSON) and charts (PNG, SVG) read back; bad parameters answered with a 422 naming the
query field; and the same figures on PostgreSQL as on SQLite."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from services.platform import Platform, build_platform
from services.segmentation.analytics import reports, routes
from services.segmentation.analytics.periods import Interval, Range
from services.segmentation.value.models import Defection
from shared.db import create_engine, session_factory
from tests.unit.segmentation.test_analytics import JAN_TO_MAY, NOW, seed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Q1 = {"since": "2026-01-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}
ENDPOINTS = ["cohorts", "retention", "new-vs-loyal", "revenue-by-tier", "defections"]


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    platform = build_platform(var_dir=tmp_path)
    runtime = platform.runtimes["segmentation"]
    paths = {getattr(route, "path", None) for route in runtime.app.routes}
    if "/analytics/cohorts" not in paths:  # until app.py includes the router itself
        runtime.include_router(routes.router)
    return platform


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        yield c


async def customer(gw: httpx.AsyncClient, given: str, email: str) -> str:
    response = await gw.post(
        "/api/identity/customers", json={"given_name": given, "family_name": "Test", "email": email}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def purchase(
    gw: httpx.AsyncClient, customer_id: str, when: str, minor: int, currency: str = "EUR"
) -> str:
    response = await gw.post(
        "/api/interactions/purchases",
        json={
            "customer_id": customer_id,
            "currency": currency,
            "channel": "store",
            "occurred_at": when,
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": minor}],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def history(gw: httpx.AsyncClient, platform: Platform) -> dict[str, str]:
    """Ana buys in January and February (the first refunded in part, today); Ben first buys in
    February, once in EUR and once in USD. Three defections are recorded in March."""
    ana = await customer(gw, "Ana", "ana.analytics@example.com")
    ben = await customer(gw, "Ben", "ben.analytics@example.com")
    first = await purchase(gw, ana, "2026-01-10T10:00:00Z", 2000)
    await purchase(gw, ana, "2026-02-12T10:00:00Z", 3000)
    await purchase(gw, ben, "2026-02-03T10:00:00Z", 1000)
    await purchase(gw, ben, "2026-02-20T10:00:00Z", 700, "USD")
    refund = await gw.post(
        f"/api/interactions/purchases/{first}/refunds",
        json={"amount_minor": 500, "currency": "EUR", "reason": "damaged", "idempotency_key": "an-1"},
    )
    assert refund.status_code == 201, refund.text
    await platform.drain()
    runtime = platform.runtimes["segmentation"]
    async with runtime.sessions() as session:
        march = datetime(2026, 3, 1, tzinfo=UTC)
        rows = [(ana, "price"), (ben, "price"), (ben, "service")]
        await session.execute(
            insert(Defection),
            [{"customer_id": c, "reason": r, "at": march, "noted_by": "e2e"} for c, r in rows],
        )
        await session.commit()
    return {"ana": ana, "ben": ben}


async def get(gw: httpx.AsyncClient, endpoint: str, **params: Any) -> dict[str, Any]:
    response = await gw.get(f"/api/segmentation/analytics/{endpoint}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def test_cohorts(gw: httpx.AsyncClient, history: dict[str, str]) -> None:
    table = await get(gw, "cohorts", months=2, **Q1)
    assert [(c["month"], c["customers"], c["active"], c["retention"]) for c in table["cohorts"]] == [
        ("2026-01-01", 1, [1, 1, 0], [1.0, 1.0, 0.0]),  # Ana: January, again in February
        ("2026-02-01", 1, [1, 0, 0], [1.0, 0.0, 0.0]),  # Ben: February only
        ("2026-03-01", 0, [0, 0, 0], [None, None, None]),
    ]


async def test_retention_repeat_share_and_churn(gw: httpx.AsyncClient, history: dict[str, str]) -> None:
    report = await get(gw, "retention", interval="month", lapse_days=40, **Q1)
    periods = [
        (p["start"], p["buyers"], p["previous_buyers"], p["retained"], p["retention_rate"])
        for p in report["periods"]
    ]
    assert periods == [
        ("2026-01-01", 1, 0, 0, None),
        ("2026-02-01", 2, 1, 1, 1.0),
        ("2026-03-01", 0, 2, 0, 0.0),
    ]
    assert report["repeat_customers"] == {"customers": 2, "repeat_customers": 2, "share": 1.0}
    churn = report["churn"]  # at 1 April, 40 days: Ana (last 12 Feb) lapsed, Ben (20 Feb) not yet
    assert (churn["basis"], churn["customers"], churn["churned"], churn["rate"]) == ("lapse_days", 2, 1, 0.5)


async def test_new_vs_loyal(gw: httpx.AsyncClient, history: dict[str, str]) -> None:
    report = await get(gw, "new-vs-loyal", interval="month", **Q1)
    assert report["currencies"] == ["EUR", "USD"]
    jan, feb, mar = report["periods"]
    assert jan["new"] == {"customers": 1, "purchases": 1, "revenue": {"EUR": 2000}}
    assert feb["new"] == {"customers": 1, "purchases": 2, "revenue": {"EUR": 1000, "USD": 700}}
    assert feb["returning"] == {"customers": 1, "purchases": 1, "revenue": {"EUR": 3000}}
    assert mar["new"]["customers"] == mar["returning"]["customers"] == 0


async def test_revenue_by_tier(gw: httpx.AsyncClient, history: dict[str, str]) -> None:
    report = await get(gw, "revenue-by-tier", since="2026-01-01T00:00:00Z")  # until now: the refund counts
    assert report["available"] is True
    assert report["currencies"] == ["EUR", "USD"]
    net: dict[str, int] = {}
    for tier in report["tiers"]:
        for money in tier["by_currency"]:
            net[money["currency"]] = net.get(money["currency"], 0) + money["net_minor"]
    assert net == {"EUR": 2000 + 3000 + 1000 - 500, "USD": 700}  # whichever tier each customer is in
    assert sum(t["customers"] for t in report["tiers"]) == 2


async def test_defections(gw: httpx.AsyncClient, history: dict[str, str]) -> None:
    report = await get(gw, "defections", **Q1)
    assert report["available"] is True
    assert report["total"] == 3
    assert [(r["reason"], r["defections"], r["customers"]) for r in report["reasons"]] == [
        ("price", 2, 2),
        ("service", 1, 1),
    ]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_charts(gw: httpx.AsyncClient, history: dict[str, str], endpoint: str) -> None:
    png = await gw.get(f"/api/segmentation/analytics/{endpoint}", params={**Q1, "format": "png"})
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)
    svg = await gw.get(f"/api/segmentation/analytics/{endpoint}", params={**Q1, "format": "svg"})
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.content).tag.endswith("svg")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "query.since"),  # no time zone
        ({"until": "2026-01-01T00:00:00"}, "query.until"),
        ({"since": "2026-03-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, "query.since"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "query.since"),  # > 3 years
        ({"format": "gif"}, "query.format"),
        ({"since": "yesterday"}, "query.since"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_bad_parameters_name_the_field(
    gw: httpx.AsyncClient, endpoint: str, params: dict[str, str], field: str
) -> None:
    response = await gw.get(f"/api/segmentation/analytics/{endpoint}", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_bad_interval_and_months(gw: httpx.AsyncClient) -> None:
    for endpoint, params, field in [
        ("retention", {"interval": "year"}, "query.interval"),
        ("new-vs-loyal", {"interval": "quarter"}, "query.interval"),
        ("cohorts", {"months": "0"}, "query.months"),
        ("retention", {"lapse_days": "0"}, "query.lapse_days"),
    ]:
        response = await gw.get(f"/api/segmentation/analytics/{endpoint}", params=params)
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]


async def test_figures_on_postgresql_equal_sqlite(tmp_path: Path, pg_database: str) -> None:
    """The period buckets are the only dialect-specific SQL: the unit fixture gives the same figures on
    both databases (and those were checked by hand in the unit tests)."""
    answers = []
    for url in (f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}", pg_database):
        engine = create_engine(url)
        await seed(engine)
        async with session_factory(engine)() as s:
            figures = [
                await reports.cohorts(s, Range(JAN_TO_MAY.since, JAN_TO_MAY.until), 4, now=NOW),
                *[await reports.retention(s, JAN_TO_MAY, i, 60, now=NOW) for i in Interval],
                *[await reports.new_vs_loyal(s, JAN_TO_MAY, i) for i in Interval],
                await reports.churn(s, NOW, 180, now=NOW),
                await reports.revenue_by_tier(s, JAN_TO_MAY),
                await reports.defections(s, JAN_TO_MAY),
            ]
            answers.append([f.model_dump(mode="json") for f in figures])
        await engine.dispose()
    sqlite, postgresql = answers
    assert postgresql == sqlite
    assert [c["active"] for c in sqlite[0]["cohorts"]][:2] == [[2, 1, 0, 1, 0], [1, 1, 0, 0, 0]]

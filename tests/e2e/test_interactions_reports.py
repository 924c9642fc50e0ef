"""Reports end to end through the gateway: contacts per channel, satisfaction and NPS, complaint
volumes, resolution times and SLA compliance — the JSON figures checked against numbers worked out
by hand on a small fixture, and the charts checked to be real PNG and SVG images.

Contacts and surveys are recorded through the API. Complaints are written straight into the
`complaints` table, as the report reads it: their timestamps (first response late, resolution in
time…) must be set exactly, which opening and handling them through the API, now, cannot do. The
report's contract columns are given explicitly; any other required column gets a neutral value.

The fixture (2025, UTC), for `since=2025-03-03` (a Monday) `until=2025-03-17`, per week:
- contacts: week of 3 Mar — phone 2 (one at 00:30+01:00 on 10 Mar, i.e. 9 Mar UTC), email 1;
  week of 10 Mar — phone 1, web 1. Excluded: one at `until` exactly, one on 28 Feb (which the
  monthly report from 15 Feb counts).
- surveys: week of 3 Mar — s1 CSAT 5, NPS 10, courtesy 5 + competence 4 (9/10); s2 CSAT 3, NPS 6,
  quality 2 + price 3 + variety 4 (9/15); s3 NPS 8 only. Week of 10 Mar — s4 CSAT 2, NPS 9;
  s5 (kiosk) all seven attributes 5 (35/35).
- complaints: see COMPLAINTS below, with the expected figures beside each.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import JSON, Boolean, DateTime, Integer, MetaData, String, Table, insert

from services.interactions.reports import charts, routes
from services.interactions.reports.periods import Interval, ReportRange, resolve_range
from services.platform import Platform, build_platform
from shared.errors import InvalidInput
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url

WEEKS = {"interval": "week", "since": "2025-03-03T00:00:00Z", "until": "2025-03-17T00:00:00Z"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=["sqlite"])
async def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The interactions service's database: SQLite by default; the figure tests run on PostgreSQL
    too (`indirect` parametrization), where days are cut by other SQL."""
    if request.param == "postgresql":
        name = await create_database("reports")
        monkeypatch.setenv("CRM_INTERACTIONS_DATABASE_URL", sqlalchemy_url(PG_ADMIN_DSN, name))
        yield request.param
        await drop_database(name)
    else:
        yield request.param


BOTH_DATABASES = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def platform(tmp_path: Path, backend: str) -> Platform:
    platform = build_platform(var_dir=tmp_path)
    assert platform.runtimes["interactions"].engine.dialect.name == backend
    return platform


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        yield client


async def customer(gw: httpx.AsyncClient, name: str = "Ana") -> str:
    response = await gw.post(
        "/api/identity/customers", json={"given_name": name, "email": f"{name.lower()}@example.com"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def report(gw: httpx.AsyncClient, name: str, **params: Any) -> dict[str, Any]:
    response = await gw.get(f"/api/interactions/reports/{name}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def periods(body: dict[str, Any], *keys: str) -> list[tuple[Any, ...]]:
    return [(p["start"], *(p[k] for k in keys)) for p in body["periods"]]


# -- contacts -------------------------------------------------------------------------------------

CONTACTS = [
    ("2025-03-03T09:00:00Z", "phone", "inquiry"),
    ("2025-03-04T12:00:00Z", "email", "inquiry"),
    ("2025-03-10T00:30:00+01:00", "phone", "visit"),  # 9 March in UTC: the first week
    ("2025-03-10T10:00:00Z", "phone", "inquiry"),
    ("2025-03-11T10:00:00Z", "web", "web_activity"),
    ("2025-03-17T00:00:00Z", "phone", "inquiry"),  # `until` is exclusive
    ("2025-02-28T23:59:00Z", "email", "inquiry"),  # before `since`
]


@pytest.fixture
async def contacts(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw)
    for occurred_at, channel, kind in CONTACTS:
        r = await gw.post(
            "/api/interactions/interactions",
            json={"customer_id": ana, "occurred_at": occurred_at, "channel": channel, "kind": kind},
        )
        assert r.status_code == 201, r.text


@BOTH_DATABASES
class TestContactsReport:
    @pytest.mark.usefixtures("contacts")
    async def test_contacts_per_channel_per_week(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "contacts", **WEEKS)
        assert body["channels"] == ["email", "phone", "web"]
        assert body["total"] == 5
        assert body["by_channel"] == {"email": 1, "phone": 3, "web": 1}
        assert periods(body, "end", "total", "by_channel") == [
            ("2025-03-03", "2025-03-10", 3, {"email": 1, "phone": 2, "web": 0}),
            ("2025-03-10", "2025-03-17", 2, {"email": 0, "phone": 1, "web": 1}),
        ]

    @pytest.mark.usefixtures("contacts")
    async def test_per_day_every_day_is_there_even_without_contacts(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "contacts", **{**WEEKS, "interval": "day"})
        assert len(body["periods"]) == 14
        totals = {p["start"]: p["total"] for p in body["periods"] if p["total"]}
        assert totals == {"2025-03-03": 1, "2025-03-04": 1, "2025-03-09": 1, "2025-03-10": 1, "2025-03-11": 1}

    @pytest.mark.usefixtures("contacts")
    async def test_per_month_with_partial_months(self, gw: httpx.AsyncClient) -> None:
        body = await report(
            gw, "contacts", interval="month", since="2025-02-15T00:00:00Z", until="2025-03-17T00:00:00Z"
        )
        assert periods(body, "end", "total") == [
            ("2025-02-01", "2025-03-01", 1),
            ("2025-03-01", "2025-04-01", 5),
        ]

    @pytest.mark.usefixtures("contacts")
    async def test_filtered_by_kind(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "contacts", **WEEKS, kind="inquiry")
        assert body["kinds"] == ["inquiry"]
        assert periods(body, "total") == [("2025-03-03", 2), ("2025-03-10", 1)]

    async def test_the_default_range_is_the_last_90_days(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw)
        r = await gw.post(
            "/api/interactions/interactions", json={"customer_id": ana, "channel": "chat", "kind": "inquiry"}
        )
        assert r.status_code == 201
        body = await report(gw, "contacts", interval="month")
        since, until = datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"])
        assert until - since == timedelta(days=90)
        assert abs(until - datetime.now(UTC)) < timedelta(minutes=5)
        assert body["by_channel"] == {"chat": 1}


# -- satisfaction ---------------------------------------------------------------------------------

SURVEYS: list[dict[str, Any]] = [
    {
        "answered_at": "2025-03-03T10:00:00Z",
        "csat": 5,
        "nps": 10,
        "ratings": {"courtesy": 5, "competence": 4},
    },
    {
        "answered_at": "2025-03-05T10:00:00Z",
        "csat": 3,
        "nps": 6,
        "ratings": {"quality": 2, "price": 3, "variety": 4},
    },
    {"answered_at": "2025-03-09T23:00:00Z", "nps": 8},
    {"answered_at": "2025-03-12T10:00:00Z", "csat": 2, "nps": 9},
    {
        "answered_at": "2025-03-16T23:59:00Z",
        "channel": "kiosk",
        "ratings": dict.fromkeys(
            ("courtesy", "competence", "quality", "price", "variety", "cleanliness", "comfort"), 5
        ),
    },
    {"answered_at": "2025-03-17T00:00:00Z", "csat": 1, "nps": 0},  # `until` is exclusive
]


@pytest.fixture
async def surveys(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw)
    for answer in SURVEYS:
        r = await gw.post(
            "/api/interactions/surveys", json={"channel": "email", **answer, "customer_id": ana}
        )
        assert r.status_code == 201, r.text


@BOTH_DATABASES
class TestSatisfactionReport:
    @pytest.mark.usefixtures("surveys")
    async def test_csat_nps_and_overall_per_week(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "satisfaction", **WEEKS)
        first, second = body["periods"]
        assert first == {
            "start": "2025-03-03",
            "end": "2025-03-10",
            "responses": 3,
            "csat_responses": 2,
            "average_csat": 4.0,  # (5 + 3) / 2
            "nps_responses": 3,
            "promoters": 1,
            "passives": 1,
            "detractors": 1,
            "nps": 0.0,  # 33.3 % − 33.3 %
            "overall_responses": 2,
            "average_overall": 9.0,  # (9 + 9) / 2
            "overall_share": 72.0,  # 18 / 25
        }
        assert second == {
            "start": "2025-03-10",
            "end": "2025-03-17",
            "responses": 2,
            "csat_responses": 1,
            "average_csat": 2.0,
            "nps_responses": 1,
            "promoters": 1,
            "passives": 0,
            "detractors": 0,
            "nps": 100.0,
            "overall_responses": 1,
            "average_overall": 35.0,
            "overall_share": 100.0,
        }
        total = body["total"]
        assert total["responses"] == 5
        assert total["average_csat"] == 3.33  # (5 + 3 + 2) / 3
        assert (total["promoters"], total["passives"], total["detractors"]) == (2, 1, 1)
        assert total["nps"] == 25.0  # 50 % − 25 %
        assert total["average_overall"] == 17.67  # (9 + 9 + 35) / 3
        assert total["overall_share"] == 88.3  # 53 / 60

    @pytest.mark.usefixtures("surveys")
    async def test_a_period_without_answers_has_no_averages(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "satisfaction", **{**WEEKS, "since": "2025-02-24T00:00:00Z"})
        empty = body["periods"][0]
        assert empty["start"] == "2025-02-24"
        assert (empty["responses"], empty["average_csat"], empty["nps"], empty["overall_share"]) == (
            0,
            None,
            None,
            None,
        )

    @pytest.mark.usefixtures("surveys")
    async def test_filtered_by_survey_channel(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "satisfaction", **WEEKS, channel="kiosk")
        assert body["channels"] == ["kiosk"]
        assert body["total"]["responses"] == 1
        assert body["total"]["overall_share"] == 100.0
        assert body["total"]["nps"] is None


# -- complaints -----------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


COMPLAINTS: list[dict[str, Any]] = [
    # c1, week 1: answered in 2 h (met), resolved in 48 h (met, week 1).
    {"priority": "high", "opened_at": "2025-03-03 10:00", "first_response_due": "2025-03-03 14:00",
     "first_response_at": "2025-03-03 12:00", "resolution_due": "2025-03-06 10:00",
     "resolved_at": "2025-03-05 10:00"},
    # c2, week 1: answered in 36 h (late, flagged), resolved in 180 h (late, flagged, in week 2).
    {"priority": "normal", "opened_at": "2025-03-04 08:00", "first_response_due": "2025-03-05 08:00",
     "first_response_at": "2025-03-05 20:00", "first_response_breached": True,
     "resolution_due": "2025-03-11 08:00", "resolved_at": "2025-03-11 20:00", "resolution_breached": True},
    # c3, week 1: never answered nor resolved, both targets long past.
    {"priority": "normal", "opened_at": "2025-03-06 09:00", "first_response_due": "2025-03-07 09:00",
     "resolution_due": "2025-03-13 09:00", "first_response_breached": True, "resolution_breached": True},
    # c4, week 2: answered in 0.5 h (met), closed without a resolution step after 12 h (met).
    {"priority": "urgent", "opened_at": "2025-03-10 09:00", "first_response_due": "2025-03-10 10:00",
     "first_response_at": "2025-03-10 09:30", "resolution_due": "2025-03-11 09:00",
     "closed_at": "2025-03-10 21:00"},
    # c5, opened before the range: only its resolution (120 h, week 1) is in it.
    {"priority": "low", "opened_at": "2025-02-27 09:00", "first_response_due": "2025-03-02 09:00",
     "first_response_at": "2025-02-27 10:00", "resolution_due": "2025-03-13 09:00",
     "resolved_at": "2025-03-04 09:00"},
]  # fmt: skip


def _neutral(column: Any, opened_at: datetime) -> Any:
    if isinstance(column.type, DateTime):
        return opened_at
    if isinstance(column.type, Boolean):
        return False
    if isinstance(column.type, Integer):
        return 1
    if isinstance(column.type, JSON):
        return {}
    if isinstance(column.type, String):
        return "test"[: column.type.length or 4]
    raise AssertionError(f"no neutral value for {column.name} ({column.type})")


@pytest.fixture
async def complaints(gw: httpx.AsyncClient, platform: Platform) -> None:
    ana = await customer(gw)
    engine = platform.runtimes["interactions"].engine
    async with engine.begin() as conn:
        table = await conn.run_sync(lambda sync: Table("complaints", MetaData(), autoload_with=sync))
        rows = []
        for n, facts in enumerate(COMPLAINTS, start=1):
            given: dict[str, Any] = {
                "id": f"c{n}",
                "customer_id": ana,
                "channel": "email",
                "category": "billing",
                "status": "resolved",
                "first_response_breached": False,
                "resolution_breached": False,
                "first_response_at": None,
                "resolved_at": None,
                "closed_at": None,
            }
            given.update(
                {k: at(v) if isinstance(v, str) and k != "priority" else v for k, v in facts.items()}
            )
            for column in table.columns:
                if column.name not in given and not column.nullable and column.server_default is None:
                    given[column.name] = _neutral(column, given["opened_at"])
            # SQLite keeps UTC wall-clock time (the service's UTCDateTime does the same).
            rows.append(
                {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in given.items()}
            )
        await conn.execute(insert(table), rows)


@BOTH_DATABASES
class TestComplaintsReport:
    @pytest.mark.usefixtures("complaints")
    async def test_volumes_times_and_sla_compliance_per_week(self, gw: httpx.AsyncClient) -> None:
        body = await report(gw, "complaints", **WEEKS)
        first, second = body["periods"]
        assert first == {
            "start": "2025-03-03",
            "end": "2025-03-10",
            "opened": 3,
            "resolved": 2,  # c1 and c5
            "opened_by_priority": {"high": 1, "normal": 2},
            "median_first_response_hours": 19.0,  # c1 2 h, c2 36 h
            "median_resolution_hours": 84.0,  # c1 48 h, c5 120 h
            "first_response_sla": {"met": 1, "missed": 2, "pending": 0, "compliance": 33.3},
            "resolution_sla": {"met": 1, "missed": 2, "pending": 0, "compliance": 33.3},
        }
        assert second == {
            "start": "2025-03-10",
            "end": "2025-03-17",
            "opened": 1,
            "resolved": 2,  # c2 and c4
            "opened_by_priority": {"urgent": 1},
            "median_first_response_hours": 0.5,
            "median_resolution_hours": 96.0,  # c4 12 h, c2 180 h
            "first_response_sla": {"met": 1, "missed": 0, "pending": 0, "compliance": 100.0},
            "resolution_sla": {"met": 1, "missed": 0, "pending": 0, "compliance": 100.0},
        }
        total = body["total"]
        assert (total["opened"], total["resolved"]) == (4, 4)
        assert total["median_first_response_hours"] == 2.0  # 0.5, 2, 36
        assert total["median_resolution_hours"] == 84.0  # 12, 48, 120, 180
        assert total["first_response_sla"]["compliance"] == 50.0
        assert total["resolution_sla"]["compliance"] == 50.0

    @pytest.mark.usefixtures("complaints")
    async def test_filtered_by_channel(self, gw: httpx.AsyncClient) -> None:
        assert (await report(gw, "complaints", **WEEKS, channel="phone"))["total"]["opened"] == 0
        assert (await report(gw, "complaints", **WEEKS, channel="email"))["total"]["opened"] == 4

    async def test_a_complaint_opened_through_the_api_is_counted(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw)
        r = await gw.post(
            "/api/interactions/complaints",
            json={"customer_id": ana, "channel": "phone", "category": "billing", "subject": "Charged twice"},
        )
        assert r.status_code == 201, r.text
        body = await report(gw, "complaints", interval="day")
        assert body["total"]["opened"] == 1
        assert body["total"]["first_response_sla"]["pending"] == 1


# -- charts ---------------------------------------------------------------------------------------

TITLES = {
    "contacts": "Contacts per channel",
    "satisfaction": "Customer satisfaction and NPS",
    "complaints": "Complaints: volumes, resolution times, SLA compliance",
}


class TestCharts:
    @pytest.mark.usefixtures("contacts", "surveys", "complaints")
    @pytest.mark.parametrize("name", sorted(TITLES))
    @pytest.mark.parametrize("interval", ["day", "week", "month"])
    async def test_png(self, gw: httpx.AsyncClient, name: str, interval: str) -> None:
        r = await gw.get(
            f"/api/interactions/reports/{name}", params={**WEEKS, "interval": interval, "format": "png"}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.content.startswith(PNG_MAGIC)
        assert len(r.content) > 10_000  # a drawn chart, not an empty canvas

    @pytest.mark.usefixtures("contacts", "surveys", "complaints")
    @pytest.mark.parametrize("name", sorted(TITLES))
    async def test_svg_is_xml_with_its_title(self, gw: httpx.AsyncClient, name: str) -> None:
        r = await gw.get(f"/api/interactions/reports/{name}", params={**WEEKS, "format": "svg"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(r.content)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        assert TITLES[name] in texts
        assert "2025-03-03 00:00 to 2025-03-17 00:00 UTC" in texts

    @pytest.mark.parametrize("name", sorted(TITLES))
    async def test_an_empty_range_still_charts(self, gw: httpx.AsyncClient, name: str) -> None:
        r = await gw.get(f"/api/interactions/reports/{name}", params={**WEEKS, "format": "svg"})
        assert r.status_code == 200, r.text
        texts = " ".join(
            t.text or "" for t in ET.fromstring(r.content).iter("{http://www.w3.org/2000/svg}text")
        )
        assert "No " in texts
        assert "in this range" in texts

    async def test_charts_are_drawn_off_the_event_loop_thread(
        self, gw: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        threads: list[threading.Thread] = []
        draw = charts.render

        def spy(*args: Any) -> bytes:
            threads.append(threading.current_thread())
            return draw(*args)

        monkeypatch.setattr(routes.charts, "render", spy)
        r = await gw.get("/api/interactions/reports/contacts", params={"format": "png"})
        assert r.status_code == 200
        assert len(threads) == 1
        assert threads[0] is not threading.main_thread()


# -- the range and the parameters -----------------------------------------------------------------


class TestParameters:
    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"since": "2025-03-03T00:00:00"}, "query.since"),
            ({"until": "2025-03-03T00:00:00"}, "query.until"),
            ({"since": "2025-03-10T00:00:00Z", "until": "2025-03-03T00:00:00Z"}, "query.since"),
            ({"since": "2020-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "query.since"),
            ({"interval": "fortnight"}, "query.interval"),
            ({"format": "gif"}, "query.format"),
            ({"since": "yesterday"}, "query.since"),
        ],
    )
    @pytest.mark.parametrize("name", sorted(TITLES))
    async def test_a_bad_parameter_is_refused_naming_it(
        self, gw: httpx.AsyncClient, name: str, params: dict[str, str], field: str
    ) -> None:
        r = await gw.get(f"/api/interactions/reports/{name}", params=params)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == [field]


class TestPeriods:
    """The range rules and the period cut, on their own."""

    NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def test_weeks_start_on_monday_and_months_on_the_first(self) -> None:
        span = ReportRange(at("2024-12-18 00:00"), at("2025-01-09 00:00"), Interval.WEEK)
        assert [d.isoformat() for d in span.periods()] == [
            "2024-12-16",
            "2024-12-23",
            "2024-12-30",
            "2025-01-06",
        ]
        months = ReportRange(at("2024-11-30 00:00"), at("2025-01-01 00:00"), Interval.MONTH)
        assert [d.isoformat() for d in months.periods()] == ["2024-11-01", "2024-12-01"]

    def test_the_range_is_converted_to_utc(self) -> None:
        span = resolve_range(
            datetime.fromisoformat("2025-03-03T01:00:00+02:00"), None, Interval.DAY, now=self.NOW
        )
        assert span.since == at("2025-03-02 23:00")
        assert span.periods()[0].isoformat() == "2025-03-02"

    def test_at_most_731_days(self) -> None:
        resolve_range(self.NOW - timedelta(days=731), self.NOW, Interval.DAY, now=self.NOW)
        with pytest.raises(InvalidInput):
            resolve_range(self.NOW - timedelta(days=732), self.NOW, Interval.DAY, now=self.NOW)

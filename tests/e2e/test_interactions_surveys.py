"""Satisfaction surveys end to end through the gateway: recording an answer (validation naming the
field, idempotency), the survey's contact on the timeline, the `survey_answered` event in the outbox,
and the survey following identity's merges and erasure.

The interactions service's outbox relay is stopped after start-up, so the outbox keeps every event
written and the tests can read what a request published; identity's relay keeps running (merges and
erasures reach interactions through `platform.drain()`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.interactions.surveys.models import SurveyRow
from services.platform import Platform, build_platform
from shared.contracts.interactions import SurveyAnswered

ANSWER: dict[str, Any] = {
    "channel": "email",
    "csat": 4,
    "nps": 9,
    "ratings": {"courtesy": 5, "competence": 4, "quality": 4, "price": 2},
    "expectations": {"courtesy": 4, "price": 4},
    "comment": "Lovely staff at the Calle Mayor store, but pricey.",
    "source_system": "survey-tool",
}


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        await platform.runtimes["interactions"].relay.stop()
        yield client


async def customer(gw: httpx.AsyncClient, name: str) -> str:
    response = await gw.post(
        "/api/identity/customers", json={"given_name": name, "email": f"{name.lower()}@example.com"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def contact(gw: httpx.AsyncClient, customer_id: str, occurred_at: str = "2026-11-02T10:00:00Z") -> str:
    response = await gw.post(
        "/api/interactions/interactions",
        json={"customer_id": customer_id, "channel": "store", "kind": "visit", "occurred_at": occurred_at},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def survey_events(platform: Platform) -> list[dict[str, Any]]:
    runtime = platform.runtimes["interactions"]
    outbox = runtime.tables.outbox
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.key, outbox.c.envelope)
            .where(outbox.c.type == SurveyAnswered.full_type())
            .order_by(outbox.c.id)
        )
        return [{"key": key, **envelope["data"]} for key, envelope in rows]


async def survey_count(platform: Platform) -> int:
    async with platform.runtimes["interactions"].engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(SurveyRow)) or 0)


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in response.json()["errors"]]


class TestRecordingASurvey:
    async def test_the_answer_is_scored_stored_and_readable(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        visit = await contact(gw, ana)
        r = await gw.post(
            "/api/interactions/surveys",
            json={
                **ANSWER,
                "customer_id": ana,
                "about_interaction_id": visit,
                "answered_at": "2026-11-03T18:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        survey = r.json()
        assert r.headers["location"] == f"/surveys/{survey['id']}"
        assert survey["customer_id"] == ana
        assert survey["about_interaction_id"] == visit
        assert survey["nps_category"] == "promoter"
        assert survey["overall"] == {"score": 15, "maximum": 20, "share": 75.0}
        assert survey["groups"] == {
            "people": {"score": 9, "maximum": 10, "share": 90.0},
            "product": {"score": 6, "maximum": 10, "share": 60.0},
        }
        assert survey["gaps"] == {"courtesy": 1, "price": -2}
        assert survey["comment"] == ANSWER["comment"]

        read = await gw.get(f"/api/interactions/surveys/{survey['id']}")
        assert read.status_code == 200
        assert read.json() == survey
        listed = await gw.get(f"/api/interactions/customers/{ana}/surveys")
        assert listed.status_code == 200
        assert [s["id"] for s in listed.json()["items"]] == [survey["id"]]

    async def test_the_survey_is_a_contact_on_the_timeline(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post(
            "/api/interactions/surveys",
            json={**ANSWER, "customer_id": ana, "answered_at": "2026-11-03T18:00:00Z"},
        )
        assert r.status_code == 201, r.text
        survey = r.json()
        timeline = await gw.get(
            f"/api/interactions/customers/{ana}/timeline", params={"kind": "survey_answer"}
        )
        assert timeline.status_code == 200, timeline.text
        (row,) = timeline.json()["items"]
        assert row["id"] == survey["interaction_id"]
        assert row["subject_type"] == "survey"
        assert row["subject_id"] == survey["id"]
        assert row["channel"] == "email"
        assert row["direction"] == "inbound"
        assert row["occurred_at"].startswith("2026-11-03T18:00:00")
        assert row["summary"] == "Survey answered: CSAT 4/5, NPS 9 (promoter), overall 15/20"
        assert ANSWER["comment"] not in str(row)

    async def test_survey_answered_is_published_with_scores_and_without_the_comment(
        self, gw: httpx.AsyncClient, platform: Platform
    ) -> None:
        ana = await customer(gw, "Ana")
        visit = await contact(gw, ana)
        survey = (
            await gw.post(
                "/api/interactions/surveys",
                json={**ANSWER, "customer_id": ana, "about_interaction_id": visit},
            )
        ).json()
        (event,) = await survey_events(platform)
        assert event["key"] == ana
        assert event["survey_id"] == survey["id"]
        assert event["interaction_id"] == survey["interaction_id"]
        assert event["about_interaction_id"] == visit
        assert (event["csat"], event["nps"], event["nps_category"]) == (4, 9, "promoter")
        assert (event["overall"], event["overall_max"]) == (15, 20)
        assert event["ratings"] == ANSWER["ratings"]
        assert ANSWER["comment"] not in str(event)

    async def test_the_same_idempotency_key_records_the_survey_once(
        self, gw: httpx.AsyncClient, platform: Platform
    ) -> None:
        ana = await customer(gw, "Ana")
        body = {**ANSWER, "customer_id": ana, "idempotency_key": "response-88412"}
        first = await gw.post("/api/interactions/surveys", json=body)
        again = await gw.post("/api/interactions/surveys", json={**body, "csat": 1})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["csat"] == 4  # the first answer stands
        other_source = await gw.post("/api/interactions/surveys", json={**body, "source_system": "kiosk-app"})
        assert other_source.status_code == 201  # keys are per source system
        assert await survey_count(platform) == 2
        assert len(await survey_events(platform)) == 2
        timeline = await gw.get(
            f"/api/interactions/customers/{ana}/timeline", params={"kind": "survey_answer"}
        )
        assert len(timeline.json()["items"]) == 2

    async def test_one_score_is_enough(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post("/api/interactions/surveys", json={"customer_id": ana, "channel": "sms", "nps": 3})
        assert r.status_code == 201, r.text
        assert r.json()["nps_category"] == "detractor"
        assert r.json()["overall"] is None
        assert r.json()["groups"] == {}

    async def test_the_attribute_catalogue_is_published(self, gw: httpx.AsyncClient) -> None:
        r = await gw.get("/api/interactions/surveys/attributes")
        assert r.status_code == 200
        groups = {a["name"]: a["group"] for a in r.json()["attributes"]}
        assert groups == {
            "courtesy": "people",
            "competence": "people",
            "quality": "product",
            "price": "product",
            "variety": "product",
            "cleanliness": "premises",
            "comfort": "premises",
        }

    async def test_an_unknown_survey_is_404(self, gw: httpx.AsyncClient) -> None:
        r = await gw.get("/api/interactions/surveys/no-such-survey")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"


class TestInvalidAnswers:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"ratings": {"friendliness": 4}}, "body.ratings.friendliness"),
            ({"ratings": {"courtesy": 6}}, "body.ratings.courtesy"),
            ({"ratings": {"price": 0}}, "body.ratings.price"),
            ({"expectations": {"comfort": 9}}, "body.expectations.comfort"),
            ({"csat": 0}, "body.csat"),
            ({"csat": 6}, "body.csat"),
            ({"nps": 11}, "body.nps"),
            ({"nps": -1}, "body.nps"),
            ({"channel": "pigeon"}, "body.channel"),
            ({"answered_at": "2026-11-03T18:00:00"}, "body.answered_at"),
            ({"answered_at": "2999-01-01T00:00:00Z"}, "body.answered_at"),
            ({"comment": "x" * 5001}, "body.comment"),
            ({"mood": "happy"}, "body.mood"),
        ],
    )
    async def test_a_bad_value_is_refused_naming_its_field(
        self, gw: httpx.AsyncClient, change: dict[str, Any], field: str
    ) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": ana, **change})
        assert field in problem_fields(r)

    async def test_a_survey_without_any_score_is_refused(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post(
            "/api/interactions/surveys",
            json={"customer_id": ana, "channel": "web", "comment": "hi", "ratings": {}},
        )
        assert problem_fields(r) == ["body"]
        assert "at least one of csat, nps, ratings" in r.json()["errors"][0]["message"]

    async def test_an_expectation_needs_a_rating_of_the_same_attribute(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post(
            "/api/interactions/surveys",
            json={
                "customer_id": ana,
                "channel": "web",
                "ratings": {"courtesy": 4},
                "expectations": {"price": 3},
            },
        )
        assert problem_fields(r) == ["body.expectations.price"]

    async def test_an_unknown_customer_is_refused(self, gw: httpx.AsyncClient) -> None:
        r = await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": "no-such-customer"})
        assert problem_fields(r) == ["body.customer_id"]

    async def test_the_contact_surveyed_must_exist(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        r = await gw.post(
            "/api/interactions/surveys", json={**ANSWER, "customer_id": ana, "about_interaction_id": "nope"}
        )
        assert problem_fields(r) == ["body.about_interaction_id"]

    async def test_the_contact_surveyed_must_be_the_same_customers(
        self, gw: httpx.AsyncClient, platform: Platform
    ) -> None:
        ana, ben = await customer(gw, "Ana"), await customer(gw, "Ben")
        bens_visit = await contact(gw, ben)
        r = await gw.post(
            "/api/interactions/surveys",
            json={**ANSWER, "customer_id": ana, "about_interaction_id": bens_visit},
        )
        assert problem_fields(r) == ["body.about_interaction_id"]
        assert await survey_count(platform) == 0
        assert await survey_events(platform) == []

    async def test_a_survey_is_not_answered_before_its_contact(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        visit = await contact(gw, ana, occurred_at="2026-11-02T10:00:00Z")
        r = await gw.post(
            "/api/interactions/surveys",
            json={
                **ANSWER,
                "customer_id": ana,
                "about_interaction_id": visit,
                "answered_at": "2026-11-01T10:00:00Z",
            },
        )
        assert problem_fields(r) == ["body.answered_at"]


class TestFollowingIdentity:
    async def test_a_merge_moves_the_surveys_to_the_survivor(
        self, gw: httpx.AsyncClient, platform: Platform
    ) -> None:
        ana, ben = await customer(gw, "Ana"), await customer(gw, "Ben")
        bens = (await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": ben})).json()
        merged = await gw.post(
            f"/api/identity/customers/{ana}/merge", json={"other_id": ben, "reason": "same person"}
        )
        assert merged.status_code == 200, merged.text
        await platform.drain()
        assert (await gw.get(f"/api/interactions/surveys/{bens['id']}")).json()["customer_id"] == ana
        listed = (await gw.get(f"/api/interactions/customers/{ben}/surveys")).json()["items"]
        assert [s["id"] for s in listed] == [bens["id"]]  # the old id shows the survivor's surveys
        late = await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": ben})
        assert late.json()["customer_id"] == ana

    async def test_erasure_removes_the_comment_and_keeps_the_scores(
        self, gw: httpx.AsyncClient, platform: Platform
    ) -> None:
        ana = await customer(gw, "Ana")
        survey = (await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": ana})).json()
        assert (await gw.delete(f"/api/identity/customers/{ana}")).status_code == 204
        await platform.drain()
        after = (await gw.get(f"/api/interactions/surveys/{survey['id']}")).json()
        assert after["comment"] is None
        assert (after["csat"], after["nps"], after["overall"]) == (4, 9, survey["overall"])
        assert (await gw.get(f"/api/interactions/customers/{ana}/surveys")).status_code == 410
        refused = await gw.post("/api/interactions/surveys", json={**ANSWER, "customer_id": ana})
        assert problem_fields(refused) == ["body.customer_id"]


class TestListing:
    async def test_pages_are_newest_first_and_chained_by_cursor(self, gw: httpx.AsyncClient) -> None:
        ana = await customer(gw, "Ana")
        ids = []
        for day in (1, 2, 3):
            r = await gw.post(
                "/api/interactions/surveys",
                json={
                    "customer_id": ana,
                    "channel": "web",
                    "csat": day,
                    "answered_at": f"2026-11-0{day}T09:00:00Z",
                },
            )
            ids.append(r.json()["id"])
        first = (await gw.get(f"/api/interactions/customers/{ana}/surveys", params={"limit": 2})).json()
        assert [s["id"] for s in first["items"]] == [ids[2], ids[1]]
        second = (
            await gw.get(
                f"/api/interactions/customers/{ana}/surveys",
                params={"limit": 2, "cursor": first["next_cursor"]},
            )
        ).json()
        assert [s["id"] for s in second["items"]] == [ids[0]]
        assert second["next_cursor"] is None

    async def test_an_unknown_customer_has_no_surveys_to_list(self, gw: httpx.AsyncClient) -> None:
        assert (await gw.get("/api/interactions/customers/nobody/surveys")).status_code == 404

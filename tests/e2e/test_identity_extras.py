"""End to end through HTTP: identity's consents, attribute definitions, households and organisation
contacts, and notes, on the identity service alone (SQLite migrated at start, in-process bus), plus
the right-of-access and erasure parts those packages give the export and erasure use cases.

The outbox relay is stopped after start-up so that the outbox keeps every event a use case wrote:
the tests read it to see which requests published `ConsentChanged`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.openapi.utils import get_openapi
from sqlalchemy import select

from services.identity.app import build
from services.identity.attributes import routes as attribute_routes
from services.identity.attributes import service as attributes
from services.identity.attributes.domain import validate_attributes
from services.identity.consents import routes as consent_routes
from services.identity.consents import service as consents
from services.identity.consents.domain import Channel, Purpose
from services.identity.consents.schemas import ConsentChange
from services.identity.households import routes as household_routes
from services.identity.households import service as households
from services.identity.notes import routes as note_routes
from services.identity.notes import service as notes
from services.identity.settings import load_settings
from shared.contracts.identity import ConsentChanged
from shared.errors import InvalidInput
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

GRANT = {"status": "granted", "source": "web_form", "evidence": "signup form v3"}
WITHDRAW = {"status": "withdrawn", "source": "call_centre", "evidence": "call 2026-11-20-0042"}


EXTRAS = (consent_routes.router, attribute_routes.router, household_routes.router, note_routes.router)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    # Identity's own composition (POST /customers relies on the state it sets up), plus the routers
    # under test where it does not include them yet.
    runtime = build(settings=load_settings(var_dir=tmp_path), bus=InProcessBus())
    served = set(get_openapi(title="served", version="0", routes=runtime.app.routes)["paths"])
    for router in EXTRAS:
        if not set(get_openapi(title="extra", version="0", routes=router.routes)["paths"]) <= served:
            runtime.include_router(router)
    await runtime.start()
    await runtime.relay.stop()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
        yield client


async def person(client: httpx.AsyncClient, name: str = "Ana") -> str:
    r = await client.post("/customers", json={"given_name": name, "email": f"{name.lower()}@example.com"})
    return registered_id(r)


async def organisation(client: httpx.AsyncClient, name: str = "Acme") -> str:
    r = await client.post("/customers", json={"kind": "organisation", "organisation_name": name})
    return registered_id(r)


def registered_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    body = response.json()
    return str(body["customer"]["id"] if "customer" in body else body["id"])  # with or without match details


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return [e["field"] for e in response.json().get("errors", [])]


async def consent_events(runtime: ServiceRuntime) -> list[dict[str, Any]]:
    outbox = runtime.tables.outbox
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.key, outbox.c.envelope)
            .where(outbox.c.type == ConsentChanged.full_type())
            .order_by(outbox.c.id)
        )
        return [{"key": key, **envelope["data"]} for key, envelope in rows]


class TestConsents:
    async def test_a_new_customer_has_no_consents_and_default_preferences(
        self, client: httpx.AsyncClient
    ) -> None:
        customer_id = await person(client)
        r = await client.get(f"/customers/{customer_id}/consents")
        assert r.status_code == 200
        assert r.json() == {
            "customer_id": customer_id,
            "consents": [],
            "preferences": {
                "do_not_contact": False,
                "preferred_channel": None,
                "preferred_language": None,
                "quiet_hours": None,
                "actor": None,
                "updated_at": None,
                "customer_id": None,
            },
        }

    async def test_put_returns_the_new_state_and_get_shows_it(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        r = await client.put(
            f"/customers/{customer_id}/consents/email/marketing", json=GRANT, headers={"x-actor": "customer"}
        )
        assert r.status_code == 200, r.text
        state = r.json()
        assert state["channel"] == "email"
        assert state["purpose"] == "marketing"
        assert state["status"] == "granted"
        assert state["source"] == "web_form"
        assert state["evidence"] == "signup form v3"
        assert state["actor"] == "customer"
        assert state["customer_id"] == customer_id
        r = await client.put(
            f"/customers/{customer_id}/consents/sms/surveys", json={**GRANT, "status": "denied"}
        )
        assert r.json()["actor"] == "system"  # no X-Actor
        current = (await client.get(f"/customers/{customer_id}/consents")).json()["consents"]
        assert [(c["channel"], c["purpose"], c["status"]) for c in current] == [
            ("email", "marketing", "granted"),
            ("sms", "surveys", "denied"),
        ]

    async def test_consent_changed_is_published_only_when_the_status_changes(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        customer_id = await person(client)
        path = f"/customers/{customer_id}/consents/email/marketing"
        assert (await client.put(path, json=GRANT)).status_code == 200
        assert (
            await client.put(path, json={**GRANT, "evidence": "reconfirmed at the till"})
        ).status_code == 200
        assert (await client.put(path, json=WITHDRAW)).status_code == 200
        assert (await client.put(path, json=WITHDRAW)).status_code == 200

        events = await consent_events(runtime)
        assert [(e["previous_status"], e["status"]) for e in events] == [
            (None, "granted"),
            ("granted", "withdrawn"),
        ]
        assert {(e["key"], e["customer_id"], e["channel"], e["purpose"]) for e in events} == {
            (customer_id, customer_id, "email", "marketing")
        }
        history = (await client.get(f"/customers/{customer_id}/consents/history")).json()
        assert [(h["previous_status"], h["status"]) for h in history] == [
            ("withdrawn", "withdrawn"),
            ("granted", "withdrawn"),
            ("granted", "granted"),
            (None, "granted"),
        ]
        assert history[2]["evidence"] == "reconfirmed at the till"

    async def test_concurrent_choices_are_serialised(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        customer_id = await person(client)
        path = f"/customers/{customer_id}/consents/push/marketing"
        bodies = [GRANT, WITHDRAW, GRANT, GRANT, WITHDRAW, GRANT, WITHDRAW, WITHDRAW]
        responses = await asyncio.gather(*(client.put(path, json=body) for body in bodies))
        assert [r.status_code for r in responses] == [200] * len(bodies)

        history = list(reversed((await client.get(f"/customers/{customer_id}/consents/history")).json()))
        assert len(history) == len(bodies)
        statuses = [None, *(h["status"] for h in history)]
        assert [h["previous_status"] for h in history] == statuses[:-1]  # each saw the one before
        changes = [(before, after) for before, after in pairwise(statuses) if before != after]
        events = await consent_events(runtime)
        assert [(e["previous_status"], e["status"]) for e in events] == changes
        current = (await client.get(f"/customers/{customer_id}/consents")).json()["consents"]
        assert current[0]["status"] == history[-1]["status"]

    async def test_withdrawing_what_was_never_granted_is_recorded(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        customer_id = await person(client)
        r = await client.put(f"/customers/{customer_id}/consents/whatsapp/third_party_sharing", json=WITHDRAW)
        assert r.status_code == 200
        assert r.json()["status"] == "withdrawn"
        history = (await client.get(f"/customers/{customer_id}/consents/history")).json()
        assert [(h["channel"], h["previous_status"], h["status"]) for h in history] == [
            ("whatsapp", None, "withdrawn")
        ]
        events = await consent_events(runtime)
        assert [(e["previous_status"], e["status"]) for e in events] == [(None, "withdrawn")]

    async def test_history_filters_and_pages(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        for channel in ("email", "sms", "push"):
            await client.put(f"/customers/{customer_id}/consents/{channel}/service", json=GRANT)
        sms = await client.get(f"/customers/{customer_id}/consents/history", params={"channel": "sms"})
        assert [h["channel"] for h in sms.json()] == ["sms"]
        page = await client.get(
            f"/customers/{customer_id}/consents/history", params={"limit": 1, "offset": 1}
        )
        assert [h["channel"] for h in page.json()] == ["sms"]

    async def test_contact_preferences(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        body = {
            "do_not_contact": False,
            "preferred_channel": "email",
            "preferred_language": "es-ES",
            "quiet_hours": {"start": "21:00", "end": "09:00", "time_zone": "Europe/Madrid"},
        }
        r = await client.put(
            f"/customers/{customer_id}/contact-preferences", json=body, headers={"x-actor": "customer"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["actor"] == "customer"
        assert r.json()["quiet_hours"] == {
            "start": "21:00:00",
            "end": "09:00:00",
            "time_zone": "Europe/Madrid",
        }
        r = await client.put(f"/customers/{customer_id}/contact-preferences", json={"do_not_contact": True})
        preferences = (await client.get(f"/customers/{customer_id}/consents")).json()["preferences"]
        assert preferences["do_not_contact"] is True
        assert preferences["preferred_channel"] is None  # PUT replaces
        assert preferences["updated_at"] is not None

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            ("consents/pigeon/marketing", GRANT, "path.channel"),
            ("consents/email/spamming", GRANT, "path.purpose"),
            ("consents/email/marketing", {**GRANT, "status": "maybe"}, "body.status"),
            ("consents/email/marketing", {**GRANT, "source": "rumour"}, "body.source"),
            ("consents/email/marketing", {"status": "granted"}, "body.source"),
            ("consents/email/marketing", {**GRANT, "evidence": "x" * 2001}, "body.evidence"),
            ("consents/email/marketing", {**GRANT, "surprise": 1}, "body.surprise"),
            ("consents/email/marketing", {**GRANT, "actor": "someone else"}, "body.actor"),
            ("contact-preferences", {"preferred_channel": "pigeon"}, "body.preferred_channel"),
            ("contact-preferences", {"preferred_language": "Spanish!"}, "body.preferred_language"),
            (
                "contact-preferences",
                {"quiet_hours": {"start": "21:00", "end": "09:00", "time_zone": "Mars/Olympus"}},
                "body.quiet_hours.time_zone",
            ),
            ("contact-preferences", {"quiet_hours": {"start": "21:00", "end": "21:00"}}, "body.quiet_hours"),
        ],
    )
    async def test_bad_input_names_the_field(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime, path: str, body: dict[str, Any], field: str
    ) -> None:
        customer_id = await person(client)
        r = await client.put(f"/customers/{customer_id}/{path}", json=body)
        assert r.status_code == 422, r.text
        assert field in problem_fields(r)
        history = (await client.get(f"/customers/{customer_id}/consents/history")).json()
        assert history == []
        assert await consent_events(runtime) == []

    async def test_bad_history_filter(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        r = await client.get(f"/customers/{customer_id}/consents/history", params={"purpose": "gossip"})
        assert r.status_code == 422
        assert problem_fields(r) == ["query.purpose"]

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", "consents", None),
            ("GET", "consents/history", None),
            ("PUT", "consents/email/marketing", GRANT),
            ("PUT", "contact-preferences", {"do_not_contact": True}),
        ],
    )
    async def test_unknown_customer(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime, method: str, path: str, body: Any
    ) -> None:
        r = await client.request(method, f"/customers/nobody/{path}", json=body)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert await consent_events(runtime) == []


class TestGoldenRecords:
    """Routes resolve one id today; the use cases already take every id of a golden record."""

    async def test_the_most_recent_choice_among_the_merged_ids_counts(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        survivor, absorbed = await person(client, "Ana"), await person(client, "Carmen")
        await client.put(f"/customers/{survivor}/consents/email/marketing", json=GRANT)
        await client.put(f"/customers/{absorbed}/consents/email/marketing", json=WITHDRAW)
        await client.put(f"/customers/{absorbed}/consents/sms/marketing", json=GRANT)

        golden = await consents.get_consents(runtime.uow(), [survivor, absorbed])
        assert [(c.channel, c.status, c.customer_id) for c in golden.consents] == [
            ("email", "withdrawn", absorbed),
            ("sms", "granted", absorbed),
        ]
        async with runtime.sessions() as session:
            assert not await consents.may_contact(session, [survivor, absorbed], "email", "marketing")
            assert await consents.may_contact(session, [survivor, absorbed], "sms", "marketing")
            assert await consents.may_contact(session, [survivor], "email", "marketing")

    async def test_a_choice_on_the_golden_record_is_news_only_if_it_changes_the_union(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        survivor, absorbed = await person(client, "Ana"), await person(client, "Carmen")
        await client.put(f"/customers/{absorbed}/consents/email/marketing", json=GRANT)
        before = len(await consent_events(runtime))
        change = ConsentChange.model_validate(GRANT)
        state = await consents.set_consent(
            runtime.uow(), [survivor, absorbed], Channel.EMAIL, Purpose.MARKETING, change
        )
        assert state.customer_id == survivor
        assert len(await consent_events(runtime)) == before  # already granted through the absorbed id
        withdraw = ConsentChange.model_validate(WITHDRAW)
        await consents.set_consent(
            runtime.uow(), [survivor, absorbed], Channel.EMAIL, Purpose.MARKETING, withdraw
        )
        events = await consent_events(runtime)
        assert events[-1]["customer_id"] == survivor
        assert (events[-1]["previous_status"], events[-1]["status"]) == ("granted", "withdrawn")

    async def test_golden_notes_and_household(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        survivor, absorbed = await person(client, "Ana"), await person(client, "Carmen")
        await client.post(f"/customers/{absorbed}/notes", json={"text": "old note", "author": "agent:a"})
        await client.post(f"/customers/{survivor}/notes", json={"text": "new note", "author": "agent:b"})
        household = (
            await client.post("/households", json={"name": "G", "members": [{"customer_id": absorbed}]})
        ).json()
        texts = [n.text for n in await notes.list_notes(runtime.uow(), [survivor, absorbed])]
        assert texts == ["new note", "old note"]
        found = await households.household_of(runtime.uow(), [survivor, absorbed])
        assert found is not None
        assert found.id == household["id"]


class TestMayContact:
    async def test_grant_do_not_contact_and_quiet_hours(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        customer_id = await person(client)

        async def may(**kwargs: Any) -> bool:
            async with runtime.sessions() as session:
                return await consents.may_contact(session, [customer_id], "email", "marketing", **kwargs)

        assert not await may()  # nothing granted
        await client.put(f"/customers/{customer_id}/consents/email/marketing", json=GRANT)
        assert await may()
        await client.put(
            f"/customers/{customer_id}/contact-preferences",
            json={"quiet_hours": {"start": "21:00", "end": "09:00", "time_zone": "Europe/Madrid"}},
        )
        assert await may(at=datetime(2026, 11, 2, 11, 0, tzinfo=UTC))
        assert not await may(at=datetime(2026, 11, 2, 23, 0, tzinfo=UTC))
        await client.put(f"/customers/{customer_id}/contact-preferences", json={"do_not_contact": True})
        assert not await may()
        await client.put(f"/customers/{customer_id}/contact-preferences", json={"do_not_contact": False})
        await client.put(f"/customers/{customer_id}/consents/email/marketing", json=WITHDRAW)
        assert not await may()


class TestAttributeDefinitions:
    async def test_define_replace_list_and_delete(self, client: httpx.AsyncClient) -> None:
        r = await client.put(
            "/attribute-definitions/club_level", json={"type": "enum", "enum_values": ["a", "b"]}
        )
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/attribute-definitions/club_level"
        r = await client.put(
            "/attribute-definitions/club_level",
            json={"type": "enum", "enum_values": ["bronze", "silver", "gold"], "required": True},
        )
        assert r.status_code == 200
        created = r.json()
        assert created["enum_values"] == ["bronze", "silver", "gold"]
        assert created["required"] is True
        assert created["updated_at"] >= created["created_at"]
        await client.put("/attribute-definitions/children", json={"type": "integer", "min_value": 0})
        listed = (await client.get("/attribute-definitions")).json()
        assert [d["name"] for d in listed] == ["children", "club_level"]

        one = await client.get("/attribute-definitions/children")
        assert (one.status_code, one.json()["min_value"]) == (200, 0)
        assert (await client.delete("/attribute-definitions/children")).status_code == 204
        assert (await client.get("/attribute-definitions/children")).status_code == 404
        assert [d["name"] for d in (await client.get("/attribute-definitions")).json()] == ["club_level"]
        r = await client.delete("/attribute-definitions/children")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize(
        ("name", "body", "field"),
        [
            ("ClubLevel", {"type": "string"}, "path.name"),
            ("9lives", {"type": "string"}, "path.name"),
            ("club_level", {"type": "colour"}, "body.type"),
            ("club_level", {"type": "enum"}, "body.enum_values"),
            ("club_level", {"type": "integer", "max_length": 3}, "body.max_length"),
            ("club_level", {"type": "integer", "min_value": 3, "max_value": 2}, "body.max_value"),
            ("club_level", {"type": "string", "min_value": 3}, "body.min_value"),
            ("club_level", {"type": "string", "surprise": 3}, "body.surprise"),
        ],
    )
    async def test_bad_definitions_name_the_field(
        self, client: httpx.AsyncClient, name: str, body: dict[str, Any], field: str
    ) -> None:
        r = await client.put(f"/attribute-definitions/{name}", json=body)
        assert r.status_code == 422, r.text
        assert field in problem_fields(r)
        assert (await client.get("/attribute-definitions")).json() == []

    async def test_stored_definitions_validate_profile_values(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        await client.put("/attribute-definitions/club_level", json={"type": "enum", "enum_values": ["gold"]})
        await client.put("/attribute-definitions/children", json={"type": "integer", "max_value": 20})
        await client.put("/attribute-definitions/anniversary", json={"type": "date", "required": True})
        async with runtime.sessions() as session:
            definitions = await attributes.load_definitions(session)
        assert sorted(definitions) == ["anniversary", "children", "club_level"]
        valid = validate_attributes(
            definitions, {"club_level": "gold", "children": 3, "anniversary": "2020-01-31"}, partial=False
        )
        assert valid == {"club_level": "gold", "children": 3, "anniversary": "2020-01-31"}
        with pytest.raises(InvalidInput) as caught:
            validate_attributes(definitions, {"club_level": "tin", "children": "3", "x": 1}, partial=False)
        assert [e.field for e in caught.value.errors] == [
            "body.attributes.club_level",
            "body.attributes.children",
            "body.attributes.x",
            "body.attributes.anniversary",
        ]


class TestHouseholds:
    async def test_create_read_add_remove(self, client: httpx.AsyncClient) -> None:
        ana, luis, eva = (
            await person(client, "Ana"),
            await person(client, "Luis"),
            await person(client, "Eva"),
        )
        r = await client.post(
            "/households",
            json={
                "name": "García López",
                "members": [{"customer_id": ana, "role": "head"}, {"customer_id": luis, "role": "partner"}],
            },
        )
        assert r.status_code == 201, r.text
        household = r.json()
        assert r.headers["location"] == f"/households/{household['id']}"
        assert household["name"] == "García López"
        assert {(m["customer_id"], m["role"]) for m in household["members"]} == {
            (ana, "head"),
            (luis, "partner"),
        }

        r = await client.post(
            f"/households/{household['id']}/members", json={"customer_id": eva, "role": "child"}
        )
        assert r.status_code == 201, r.text
        assert len(r.json()["members"]) == 3
        assert (await client.get(f"/customers/{eva}/household")).json()["id"] == household["id"]

        assert (await client.delete(f"/households/{household['id']}/members/{luis}")).status_code == 204
        read = (await client.get(f"/households/{household['id']}")).json()
        assert {m["customer_id"] for m in read["members"]} == {ana, eva}
        r = await client.get(f"/customers/{luis}/household")
        assert r.status_code == 200
        assert r.json() is None

    async def test_a_person_is_in_at_most_one_household(self, client: httpx.AsyncClient) -> None:
        ana, luis = await person(client, "Ana"), await person(client, "Luis")
        first = (
            await client.post("/households", json={"name": "One", "members": [{"customer_id": ana}]})
        ).json()
        r = await client.post(
            "/households", json={"name": "Two", "members": [{"customer_id": luis}, {"customer_id": ana}]}
        )
        assert r.status_code == 409, r.text
        assert problem_fields(r) == ["body.members.1.customer_id"]
        assert r.json()["household_id"] == first["id"]
        assert (await client.get(f"/customers/{luis}/household")).json() is None  # nothing half-written

        second = (
            await client.post("/households", json={"name": "Two", "members": [{"customer_id": luis}]})
        ).json()
        r = await client.post(f"/households/{second['id']}/members", json={"customer_id": ana})
        assert r.status_code == 409
        assert problem_fields(r) == ["body.customer_id"]

    @pytest.mark.parametrize(
        ("members", "field"),
        [
            ([{"customer_id": "ORG"}], "body.members.0.customer_id"),
            ([{"customer_id": "ANA"}, {"customer_id": "nobody"}], "body.members.1.customer_id"),
            ([{"customer_id": "ANA"}, {"customer_id": "ANA"}], "body.members.1.customer_id"),
            (
                [{"customer_id": "ANA", "role": "head"}, {"customer_id": "LUIS", "role": "head"}],
                "body.members.1.role",
            ),
            ([{"customer_id": "ANA", "role": "grandmaster"}], "body.members.0.role"),
            ([], "body.members"),
        ],
    )
    async def test_bad_members_name_the_field(
        self, client: httpx.AsyncClient, members: list[dict[str, str]], field: str
    ) -> None:
        ids = {
            "ANA": await person(client, "Ana"),
            "LUIS": await person(client, "Luis"),
            "ORG": await organisation(client),
        }
        members = [{**m, "customer_id": ids.get(m["customer_id"], m["customer_id"])} for m in members]
        r = await client.post("/households", json={"name": "H", "members": members})
        assert r.status_code == 422, r.text
        assert field in problem_fields(r)
        assert (await client.get(f"/customers/{ids['ANA']}/household")).json() is None

    async def test_adding_a_second_head_or_an_organisation(self, client: httpx.AsyncClient) -> None:
        ana, luis, acme = (
            await person(client, "Ana"),
            await person(client, "Luis"),
            await organisation(client),
        )
        household = (
            await client.post(
                "/households", json={"name": "H", "members": [{"customer_id": ana, "role": "head"}]}
            )
        ).json()
        r = await client.post(
            f"/households/{household['id']}/members", json={"customer_id": luis, "role": "head"}
        )
        assert r.status_code == 422
        assert problem_fields(r) == ["body.role"]
        r = await client.post(f"/households/{household['id']}/members", json={"customer_id": acme})
        assert r.status_code == 422
        assert problem_fields(r) == ["body.customer_id"]

    async def test_unknown_household_member_or_customer(self, client: httpx.AsyncClient) -> None:
        ana = await person(client)
        assert (await client.get("/households/nope")).status_code == 404
        assert (await client.post("/households/nope/members", json={"customer_id": ana})).status_code == 404
        assert (await client.delete(f"/households/nope/members/{ana}")).status_code == 404
        household = (
            await client.post("/households", json={"name": "H", "members": [{"customer_id": ana}]})
        ).json()
        assert (await client.delete(f"/households/{household['id']}/members/someone")).status_code == 404
        r = await client.get("/customers/nobody/household")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"


class TestOrganisationContacts:
    async def test_link_list_unlink(self, client: httpx.AsyncClient) -> None:
        acme, ana, luis = (
            await organisation(client),
            await person(client, "Ana"),
            await person(client, "Luis"),
        )
        r = await client.post(
            f"/customers/{acme}/contacts", json={"customer_id": ana, "role": "Purchasing manager"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["organisation_id"] == acme
        assert r.json()["customer_id"] == ana
        await client.post(f"/customers/{acme}/contacts", json={"customer_id": luis, "role": "CFO"})
        listed = (await client.get(f"/customers/{acme}/contacts")).json()
        assert [(c["customer_id"], c["role"]) for c in listed] == [(ana, "Purchasing manager"), (luis, "CFO")]
        assert (await client.delete(f"/customers/{acme}/contacts/{luis}")).status_code == 204
        assert [c["customer_id"] for c in (await client.get(f"/customers/{acme}/contacts")).json()] == [ana]
        assert (await client.delete(f"/customers/{acme}/contacts/{luis}")).status_code == 404

    async def test_the_contact_must_be_a_person(self, client: httpx.AsyncClient) -> None:
        acme, globex = await organisation(client, "Acme"), await organisation(client, "Globex")
        r = await client.post(f"/customers/{acme}/contacts", json={"customer_id": globex, "role": "Partner"})
        assert r.status_code == 422
        assert problem_fields(r) == ["body.customer_id"]
        r = await client.post(f"/customers/{acme}/contacts", json={"customer_id": "nobody", "role": "CFO"})
        assert r.status_code == 422
        assert problem_fields(r) == ["body.customer_id"]

    async def test_the_organisation_must_be_one(self, client: httpx.AsyncClient) -> None:
        ana, luis = await person(client, "Ana"), await person(client, "Luis")
        r = await client.post(f"/customers/{ana}/contacts", json={"customer_id": luis, "role": "Friend"})
        assert r.status_code == 422
        assert problem_fields(r) == ["path.organisation_id"]
        r = await client.get(f"/customers/{ana}/contacts")
        assert r.status_code == 422
        assert problem_fields(r) == ["path.organisation_id"]
        assert (await client.get("/customers/nobody/contacts")).status_code == 404

    async def test_twice_and_bad_bodies(self, client: httpx.AsyncClient) -> None:
        acme, ana = await organisation(client), await person(client)
        body = {"customer_id": ana, "role": "CFO"}
        assert (await client.post(f"/customers/{acme}/contacts", json=body)).status_code == 201
        r = await client.post(f"/customers/{acme}/contacts", json=body)
        assert r.status_code == 409
        assert problem_fields(r) == ["body.customer_id"]
        r = await client.post(f"/customers/{acme}/contacts", json={"customer_id": ana, "role": ""})
        assert r.status_code == 422
        assert problem_fields(r) == ["body.role"]


class TestNotes:
    async def test_write_list_delete(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        first = await client.post(
            f"/customers/{customer_id}/notes", json={"text": "first", "author": "agent:a"}
        )
        assert first.status_code == 201, first.text
        assert first.json()["customer_id"] == customer_id
        assert first.json()["pinned"] is False
        await client.post(
            f"/customers/{customer_id}/notes", json={"text": "pinned", "author": "a", "pinned": True}
        )
        await client.post(f"/customers/{customer_id}/notes", json={"text": "latest", "author": "agent:b"})
        listed = (await client.get(f"/customers/{customer_id}/notes")).json()
        assert [n["text"] for n in listed] == ["pinned", "latest", "first"]
        assert (
            await client.delete(f"/customers/{customer_id}/notes/{first.json()['id']}")
        ).status_code == 204
        assert [n["text"] for n in (await client.get(f"/customers/{customer_id}/notes")).json()] == [
            "pinned",
            "latest",
        ]

    async def test_the_acting_user_is_the_author(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        r = await client.post(
            f"/customers/{customer_id}/notes",
            json={"text": "called back", "author": "someone else"},
            headers={"x-actor": "agent:mlopez"},
        )
        assert r.status_code == 201
        assert r.json()["author"] == "agent:mlopez"
        r = await client.post(
            f"/customers/{customer_id}/notes", json={"text": "t"}, headers={"x-actor": "agent:b"}
        )
        assert r.json()["author"] == "agent:b"

    async def test_a_note_belongs_to_its_customer(self, client: httpx.AsyncClient) -> None:
        ana, luis = await person(client, "Ana"), await person(client, "Luis")
        note = (await client.post(f"/customers/{ana}/notes", json={"text": "hers", "author": "a"})).json()
        assert (await client.delete(f"/customers/{luis}/notes/{note['id']}")).status_code == 404
        assert (await client.delete(f"/customers/{ana}/notes/unknown")).status_code == 404
        assert len((await client.get(f"/customers/{ana}/notes")).json()) == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"text": "x" * 10_001, "author": "a"}, "body.text"),
            ({"text": "   ", "author": "a"}, "body.text"),
            ({"text": "hello"}, "body.author"),
            ({"text": "hello", "author": "a", "pinned": "very"}, "body.pinned"),
            ({"text": "hello", "author": "a", "colour": "red"}, "body.colour"),
        ],
    )
    async def test_bad_notes_name_the_field(
        self, client: httpx.AsyncClient, body: dict[str, Any], field: str
    ) -> None:
        customer_id = await person(client)
        r = await client.post(f"/customers/{customer_id}/notes", json=body)
        assert r.status_code == 422
        assert field in problem_fields(r)

    async def test_the_longest_note(self, client: httpx.AsyncClient) -> None:
        customer_id = await person(client)
        r = await client.post(f"/customers/{customer_id}/notes", json={"text": "x" * 10_000, "author": "a"})
        assert r.status_code == 201

    async def test_unknown_customer(self, client: httpx.AsyncClient) -> None:
        assert (
            await client.post("/customers/nobody/notes", json={"text": "t", "author": "a"})
        ).status_code == 404
        assert (await client.get("/customers/nobody/notes")).status_code == 404
        assert (await client.delete("/customers/nobody/notes/any")).status_code == 404


class TestExportAndErasure:
    async def given_a_known_customer(self, client: httpx.AsyncClient) -> dict[str, str]:
        ana, luis, acme = (
            await person(client, "Ana"),
            await person(client, "Luis"),
            await organisation(client),
        )
        await client.put(f"/customers/{ana}/consents/email/marketing", json=GRANT)
        await client.put(f"/customers/{ana}/consents/sms/marketing", json=WITHDRAW)
        await client.put(
            f"/customers/{ana}/contact-preferences",
            json={"preferred_channel": "email", "preferred_language": "es"},
            headers={"x-actor": "customer"},
        )
        await client.put("/attribute-definitions/club_level", json={"type": "enum", "enum_values": ["gold"]})
        family = await client.post(
            "/households",
            json={"name": "García", "members": [{"customer_id": ana, "role": "head"}, {"customer_id": luis}]},
        )
        await client.post(f"/customers/{acme}/contacts", json={"customer_id": ana, "role": "CFO"})
        await client.post(f"/customers/{ana}/notes", json={"text": "Allergic to cats", "author": "agent:a"})
        return {"ana": ana, "luis": luis, "acme": acme, "household": family.json()["id"]}

    async def test_export(self, client: httpx.AsyncClient, runtime: ServiceRuntime) -> None:
        known = await self.given_a_known_customer(client)
        ana = known["ana"]
        async with runtime.sessions() as session:
            exported = {
                "consents": await consents.export_customer_data(session, [ana]),
                "attributes": await attributes.export_customer_data(session, [ana]),
                "households": await households.export_customer_data(session, [ana]),
                "notes": await notes.export_customer_data(session, [ana]),
            }
        assert [(c["channel"], c["status"], c["evidence"]) for c in exported["consents"]["consents"]] == [
            ("email", "granted", "signup form v3"),
            ("sms", "withdrawn", "call 2026-11-20-0042"),
        ]
        assert len(exported["consents"]["consent_history"]) == 2
        assert exported["consents"]["contact_preferences"][0]["preferred_language"] == "es"
        assert exported["attributes"] == {
            "attribute_definitions": [{"name": "club_level", "type": "enum", "description": None}]
        }
        assert [(h["household_id"], h["name"], h["role"]) for h in exported["households"]["households"]] == [
            (known["household"], "García", "head")
        ]
        assert known["luis"] not in str(exported["households"]["households"])  # other members are theirs
        assert [
            (c["organisation_id"], c["role"]) for c in exported["households"]["organisation_contacts"]
        ] == [(known["acme"], "CFO")]
        assert [n["text"] for n in exported["notes"]["notes"]] == ["Allergic to cats"]

    async def test_erasure(self, client: httpx.AsyncClient, runtime: ServiceRuntime) -> None:
        known = await self.given_a_known_customer(client)
        ana, luis = known["ana"], known["luis"]
        async with runtime.uow() as uow:
            for package in (consents, attributes, households, notes):
                await package.erase_customer_data(uow.session, [ana])
            await uow.commit()

        # Consents: the proof of each choice stays, the free text and the actor go.
        state = (await client.get(f"/customers/{ana}/consents")).json()
        assert [
            (c["channel"], c["status"], c["source"], c["evidence"], c["actor"]) for c in state["consents"]
        ] == [
            ("email", "granted", "web_form", None, None),
            ("sms", "withdrawn", "call_centre", None, None),
        ]
        history = (await client.get(f"/customers/{ana}/consents/history")).json()
        assert [(h["status"], h["evidence"], h["actor"]) for h in history] == [
            ("withdrawn", None, None),
            ("granted", None, None),
        ]
        assert state["preferences"]["do_not_contact"] is True
        assert state["preferences"]["preferred_language"] is None
        async with runtime.sessions() as session:
            assert not await consents.may_contact(session, [ana], "email", "marketing")

        # Households and contacts: she left them; the rest of the family stays.
        assert (await client.get(f"/customers/{ana}/household")).json() is None
        family = (await client.get(f"/households/{known['household']}")).json()
        assert [m["customer_id"] for m in family["members"]] == [luis]
        assert (await client.get(f"/customers/{known['acme']}/contacts")).json() == []
        # Notes: gone.
        assert (await client.get(f"/customers/{ana}/notes")).json() == []
        # Attribute definitions are not personal data.
        assert [d["name"] for d in (await client.get("/attribute-definitions")).json()] == ["club_level"]

    async def test_an_erased_customer_can_be_read_not_written(self, client: httpx.AsyncClient) -> None:
        ana, acme, luis = (
            await person(client, "Ana"),
            await organisation(client),
            await person(client, "Luis"),
        )
        await client.put(f"/customers/{ana}/consents/email/marketing", json=WITHDRAW)
        assert (await client.delete(f"/customers/{ana}")).status_code == 204  # identity's erasure
        assert (await client.delete(f"/customers/{acme}")).status_code == 204

        consented = (await client.get(f"/customers/{ana}/consents")).json()["consents"]
        assert [c["status"] for c in consented] == ["withdrawn"]  # the proof stays readable
        for method, path, body in [
            ("PUT", f"/customers/{ana}/consents/email/marketing", GRANT),
            ("PUT", f"/customers/{ana}/contact-preferences", {"do_not_contact": False}),
            ("POST", f"/customers/{ana}/notes", {"text": "t", "author": "a"}),
            ("POST", f"/customers/{acme}/contacts", {"customer_id": luis, "role": "CFO"}),
        ]:
            r = await client.request(method, path, json=body)
            assert r.status_code == 410, (path, r.text)
            assert r.json()["type"].endswith("/gone")
        r = await client.post("/households", json={"name": "H", "members": [{"customer_id": ana}]})
        assert r.status_code == 422
        assert problem_fields(r) == ["body.members.0.customer_id"]

    async def test_the_last_member_erased_takes_the_household_with_them(
        self, client: httpx.AsyncClient, runtime: ServiceRuntime
    ) -> None:
        ana = await person(client)
        household = (
            await client.post("/households", json={"name": "Solo", "members": [{"customer_id": ana}]})
        ).json()
        async with runtime.uow() as uow:
            await households.erase_customer_data(uow.session, [ana])
            await uow.commit()
        assert (await client.get(f"/households/{household['id']}")).status_code == 404


async def test_every_route_is_documented(runtime: ServiceRuntime) -> None:
    document = runtime.app.openapi()
    expected = {
        "/customers/{customer_id}/consents": {"get"},
        "/customers/{customer_id}/consents/{channel}/{purpose}": {"put"},
        "/customers/{customer_id}/consents/history": {"get"},
        "/customers/{customer_id}/contact-preferences": {"put"},
        "/attribute-definitions": {"get"},
        "/attribute-definitions/{name}": {"get", "put", "delete"},
        "/households": {"post"},
        "/households/{household_id}": {"get"},
        "/households/{household_id}/members": {"post"},
        "/households/{household_id}/members/{customer_id}": {"delete"},
        "/customers/{customer_id}/household": {"get"},
        "/customers/{organisation_id}/contacts": {"get", "post"},
        "/customers/{organisation_id}/contacts/{customer_id}": {"delete"},
        "/customers/{customer_id}/notes": {"get", "post"},
        "/customers/{customer_id}/notes/{note_id}": {"delete"},
    }
    for path, methods in expected.items():
        assert path in document["paths"], path
        assert set(document["paths"][path]) == methods, path
        for method in methods:
            operation = document["paths"][path][method]
            assert operation.get("summary"), (path, method)
            documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert documented == set(re.findall(r"{(\w+)}", path)), (path, method)

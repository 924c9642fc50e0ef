"""Identity through the gateway (embedded mode): one customer, one golden record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.platform import Platform, build_platform

ANA = {
    "source_system": "web",
    "source_id": "w-1",
    "given_name": "Ana",
    "family_name": "García",
    "email": "Ana.Garcia@Gmail.com",
    "phone": "612 345 678",
    "birth_date": "1988-04-12",
    "language": "es",
    "addresses": [
        {
            "street_number": "12",
            "street": "Calle Mayor",
            "locality": "Madrid",
            "postcode": "28013",
            "country": "ES",
        }
    ],
}


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw/api/identity", headers={"x-actor": "agent:lucia"}
        ) as client:
            yield client


async def ingest(api: httpx.AsyncClient, body: dict[str, Any], expected: int | None = None) -> dict[str, Any]:
    response = await api.post("/records", json=body)
    if expected is not None:
        assert response.status_code == expected, response.text
    return response.json()  # type: ignore[no-any-return]


class TestIngestion:
    async def test_a_new_person_is_created_with_normalised_identifiers(self, api: httpx.AsyncClient) -> None:
        body = await ingest(api, ANA, 201)
        assert body["match"]["outcome"] == "created"
        customer = body["customer"]
        assert customer["email"] == "ana.garcia@gmail.com"
        assert customer["phone"] == "+34612345678"  # E.164, region from the address
        assert customer["birth_date"] == "1988-04-12"

    async def test_the_same_person_from_another_channel_joins_the_golden_record(
        self, api: httpx.AsyncClient
    ) -> None:
        first = await ingest(api, ANA, 201)
        store = {
            "source_system": "pos",
            "source_id": "p-77",
            "given_name": "ana",
            "family_name": "Garcia",
            "email": "anagarcia+shop@gmail.com",
            "phone": "+34 612-345-678",
            "birth_date": "1988-04-12",
        }
        second = await ingest(api, store, 200)
        assert second["match"]["outcome"] == "matched"
        assert second["customer"]["id"] == first["customer"]["id"]
        assert second["match"]["probability"] >= 0.99
        lineage = (await api.get(f"/customers/{first['customer']['id']}/records")).json()
        assert sorted(r["source_system"] for r in lineage["records"]) == ["pos", "web"]
        assert lineage["provenance"]["given_name"]["source_system"] == "pos"  # pos is trusted more than web
        resolved = (await api.get("/records/pos/p-77")).json()
        assert resolved["customer_id"] == first["customer"]["id"]

    async def test_a_candidate_far_below_the_review_threshold_is_not_reported(
        self, api: httpx.AsyncClient
    ) -> None:
        first = await ingest(api, ANA, 201)
        # Same family name and postcode (a shared blocking key), otherwise another person.
        sister = {
            "source_system": "web",
            "source_id": "w-2",
            "given_name": "Lucía",
            "family_name": "García",
            "email": "lucia.g@example.org",
            "phone": "699 000 111",
            "birth_date": "1979-01-30",
            "addresses": ANA["addresses"],
        }
        body = await ingest(api, sister, 201)
        assert body["match"]["outcome"] == "created"
        assert body["customer"]["id"] != first["customer"]["id"]
        assert body["match"]["probability"] is None  # not scored in full: it could change nothing
        assert body["match"]["candidate_id"] is None
        assert body["match"]["evidence"] == []

    async def test_the_same_source_record_again_updates_it(self, api: httpx.AsyncClient) -> None:
        first = await ingest(api, ANA, 201)
        again = await ingest(api, {**ANA, "phone": "+34 699 111 222"}, 200)
        assert again["match"]["outcome"] == "updated"
        assert again["customer"]["phone"] == "+34699111222"
        assert again["customer"]["id"] == first["customer"]["id"]
        assert again["customer"]["version"] > first["customer"]["version"]

    async def test_a_family_member_sharing_the_email_is_not_merged(self, api: httpx.AsyncClient) -> None:
        first = await ingest(api, ANA, 201)
        brother = {
            "source_system": "web",
            "source_id": "w-2",
            "given_name": "Pablo",
            "family_name": "García",
            "email": "ana.garcia@gmail.com",
            "birth_date": "1991-09-30",
        }
        second = await ingest(api, brother)
        assert second["match"]["outcome"] in ("created", "review")
        assert second["customer"]["id"] != first["customer"]["id"]

    async def test_placeholder_identifiers_never_join_customers(self, api: httpx.AsyncClient) -> None:
        a = await ingest(
            api,
            {
                "source_system": "pos",
                "given_name": "Luis",
                "family_name": "Ruiz",
                "email": "test@test.com",
                "phone": "000000000",
            },
            201,
        )
        b = await ingest(
            api,
            {
                "source_system": "pos",
                "given_name": "Marta",
                "family_name": "Sanz",
                "email": "test@test.com",
                "phone": "000000000",
            },
            201,
        )
        assert a["customer"]["id"] != b["customer"]["id"]

    async def test_a_strong_identifier_matches_deterministically(self, api: httpx.AsyncClient) -> None:
        first = await ingest(api, {**ANA, "external_ids": {"shopify": "7712"}}, 201)
        other = {
            "source_system": "shopify",
            "source_id": "7712-b",
            "given_name": "Ana",
            "family_name": "Garcia Lopez",
            "external_ids": {"shopify": "7712"},
        }
        second = await ingest(api, other, 200)
        assert second["customer"]["id"] == first["customer"]["id"]

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"email": "not-an-email"}, "body.email"),
            ({"phone": "12"}, "body.phone"),
            ({"birth_date": "1988-02-30"}, "body.birth_date"),
            ({"birth_date": "2999-01-01"}, "body"),
            ({"shoe_size": 42}, "body.shoe_size"),
            ({"verified": ["shoe_size"]}, "body"),
            ({"addresses": [{"country": "Spain"}]}, "body.addresses.0.country"),
            ({"family_name": "Garc\u0000ia"}, "body.family_name"),  # PostgreSQL text cannot hold NUL
            ({"attributes": {"note": "a\u0000b"}}, "body.attributes"),
        ],
    )
    async def test_bad_input_names_the_field_and_writes_nothing(
        self, api: httpx.AsyncClient, patch: dict[str, Any], field: str
    ) -> None:
        response = await api.post("/records", json={**ANA, **patch})
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
        assert (await api.get("/customers", params={"q": "ana garcia"})).json()["items"] == []


class TestReadAndEdit:
    async def test_if_match_guards_against_lost_updates(self, api: httpx.AsyncClient) -> None:
        created = (await ingest(api, ANA, 201))["customer"]
        url = f"/customers/{created['id']}"
        read = await api.get(url)
        etag = read.headers["etag"]
        ok = await api.patch(
            url, json={"phone": "+34 600 000 001", "reason": "customer called"}, headers={"If-Match": etag}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["phone"] == "+34600000001"
        stale = await api.patch(url, json={"phone": "+34 600 000 002"}, headers={"If-Match": etag})
        assert stale.status_code == 412
        assert (await api.get(url)).json()["phone"] == "+34600000001"

    async def test_every_change_is_audited(self, api: httpx.AsyncClient) -> None:
        created = (await ingest(api, ANA, 201))["customer"]
        await api.patch(
            f"/customers/{created['id']}", json={"family_name": "García Pérez", "reason": "marriage"}
        )
        changes = (await api.get(f"/customers/{created['id']}/changes")).json()
        edit = next(c for c in changes if c["cause"] == "edit")
        assert edit["actor"] == "agent:lucia"
        assert edit["reason"] == "marriage"
        assert edit["before"]["family_name"] == "García"
        assert edit["after"]["family_name"] == "García Pérez"

    async def test_unknown_customer(self, api: httpx.AsyncClient) -> None:
        assert (await api.get("/customers/nobody")).status_code == 404


class TestSearch:
    async def test_by_fuzzy_name_email_phone_and_external_id(self, api: httpx.AsyncClient) -> None:
        ana = (await ingest(api, {**ANA, "external_ids": {"shopify": "7712"}}, 201))["customer"]
        await ingest(
            api,
            {
                "source_system": "web",
                "given_name": "Jonas",
                "family_name": "Becker",
                "email": "jonas@example.de",
            },
            201,
        )
        assert [
            c["id"] for c in (await api.get("/customers", params={"q": "anna garcia"})).json()["items"]
        ] == [ana["id"]]
        assert [
            c["id"]
            for c in (await api.get("/customers", params={"email": "ANA.GARCIA@gmail.com"})).json()["items"]
        ] == [ana["id"]]
        assert [
            c["id"] for c in (await api.get("/customers", params={"phone": "+34612345678"})).json()["items"]
        ] == [ana["id"]]
        assert [
            c["id"]
            for c in (await api.get("/customers", params={"external_id": "shopify:7712"})).json()["items"]
        ] == [ana["id"]]
        bad = await api.get("/customers", params={"phone": "12"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "query.phone"

    async def test_by_card_number(self, api: httpx.AsyncClient) -> None:
        ana = (await ingest(api, {**ANA, "card_number": "LC-0042-7781"}, 201))["customer"]
        found = (await api.get("/customers", params={"card": "lc 0042 7781"})).json()["items"]
        assert [c["id"] for c in found] == [ana["id"]]
        # A card field filled with one repeated character is not a card, and no error either.
        other = await ingest(
            api,
            {"source_system": "pos", "given_name": "Ines", "family_name": "Vidal", "card_number": "0000000"},
            201,
        )
        assert (await api.get("/customers", params={"card": "0000000"})).json()["items"] == []
        assert other["match"]["outcome"] == "created"

    async def test_pagination(self, api: httpx.AsyncClient) -> None:
        for i in range(5):
            await ingest(
                api,
                {
                    "source_system": "import",
                    "source_id": f"i{i}",
                    "given_name": "Maria",
                    "family_name": f"Lopez{chr(97 + i) * 3}",
                    "email": f"m{i}@example.com",
                },
                201,
            )
        seen: list[str] = []
        cursor = None
        while True:
            params = {"q": "maria", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/customers", params=params)).json()
            seen.extend(c["id"] for c in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5


class TestMergeAndUnmerge:
    async def test_manual_merge_then_unmerge_restores_both(self, api: httpx.AsyncClient) -> None:
        a = (await ingest(api, ANA, 201))["customer"]
        b = (
            await ingest(
                api,
                {
                    "source_system": "callcentre",
                    "source_id": "c-9",
                    "given_name": "Ana",
                    "family_name": "Martín",
                    "phone": "+34 699 555 444",
                },
                201,
            )
        )["customer"]
        merged = await api.post(
            f"/customers/{a['id']}/merge", json={"other_id": b["id"], "reason": "same person"}
        )
        assert merged.status_code == 200, merged.text
        merge_id = merged.json()["id"]
        via_old_id = (await api.get(f"/customers/{b['id']}")).json()
        assert via_old_id["id"] == a["id"]
        assert via_old_id["resolved_from"] == b["id"]
        lineage = (await api.get(f"/customers/{a['id']}/records")).json()
        assert sorted(lineage["member_ids"]) == sorted([a["id"], b["id"]])
        assert len(lineage["records"]) == 2

        undone = await api.post(f"/customers/{a['id']}/unmerge", json={"merge_id": merge_id})
        assert undone.status_code == 200, undone.text
        assert (await api.get(f"/customers/{b['id']}")).json()["id"] == b["id"]
        assert (await api.get(f"/customers/{b['id']}")).json()["phone"] == "+34699555444"
        assert len((await api.get(f"/customers/{a['id']}/records")).json()["records"]) == 1
        again = await api.post(f"/customers/{a['id']}/unmerge", json={"merge_id": merge_id})
        assert again.status_code == 409

    async def test_bad_merges(self, api: httpx.AsyncClient) -> None:
        a = (await ingest(api, ANA, 201))["customer"]
        itself = await api.post(f"/customers/{a['id']}/merge", json={"other_id": a["id"]})
        assert itself.status_code == 422
        assert itself.json()["errors"][0]["field"] == "body.other_id"
        unknown = await api.post(f"/customers/{a['id']}/merge", json={"other_id": "nobody"})
        assert unknown.status_code == 422
        never = await api.post(f"/customers/{a['id']}/unmerge", json={"merge_id": "no-such-merge"})
        assert never.status_code == 422
        assert never.json()["errors"][0]["field"] == "body.merge_id"

    async def test_review_queue_merge_decision(self, api: httpx.AsyncClient) -> None:
        a = (await ingest(api, ANA, 201))["customer"]
        # Same name and postcode, nothing else known: probable, not certain.
        maybe = await ingest(
            api,
            {
                "source_system": "import",
                "source_id": "x-1",
                "given_name": "Ana",
                "family_name": "García",
                "addresses": [{"postcode": "28013", "country": "ES"}],
            },
        )
        assert maybe["match"]["outcome"] == "review", maybe["match"]
        queue = (await api.get("/match-reviews")).json()
        assert len(queue) == 1
        review = queue[0]
        assert {review["left"]["id"], review["right"]["id"]} == {a["id"], maybe["customer"]["id"]}
        assert {"given_name", "family_name"} <= {e["field"] for e in review["evidence"]}
        decided = await api.post(f"/match-reviews/{review['id']}/decision", json={"decision": "merge"})
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "merged"
        assert (await api.get(f"/customers/{maybe['customer']['id']}")).json()["id"] == a["id"]
        twice = await api.post(f"/match-reviews/{review['id']}/decision", json={"decision": "keep_apart"})
        assert twice.status_code == 409


class TestPrivacy:
    async def test_erasure_removes_personal_data_and_announces_it(
        self, api: httpx.AsyncClient, platform: Platform
    ) -> None:
        a = (await ingest(api, ANA, 201))["customer"]
        erased = await api.delete(f"/customers/{a['id']}", params={"reason": "customer request"})
        assert erased.status_code == 204
        assert (await api.get(f"/customers/{a['id']}")).status_code == 410
        assert (await api.get("/customers", params={"email": ANA["email"]})).json()["items"] == []
        # A new record with the same data is a new customer: nothing of the old one is left to match.
        again = await ingest(api, {**ANA, "source_id": "w-new"}, 201)
        assert again["customer"]["id"] != a["id"]

    async def test_export_contains_the_records(self, api: httpx.AsyncClient) -> None:
        a = (await ingest(api, ANA, 201))["customer"]
        export = (await api.get(f"/customers/{a['id']}/export")).json()
        assert export["customer"]["email"] == "ana.garcia@gmail.com"
        assert export["source_records"][0]["data"]["given_name"] == "Ana"

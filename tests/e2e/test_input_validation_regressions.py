"""Inputs Schemathesis found answered with a 5xx (tests/e2e/test_schemathesis.py), each now refused
with a 4xx problem document naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.platform import build_platform


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_platform(var_dir=tmp_path).gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


def assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]], response.text


async def test_complaint_queue_refuses_an_empty_customer_id(gw: httpx.AsyncClient) -> None:
    # Was 503 "identity service answered 307": the empty id became a lookup of `/customers/`.
    assert_refused(
        await gw.get("/api/interactions/complaints", params={"customer_id": ""}), "query.customer_id"
    )
    assert (await gw.get("/api/interactions/complaints")).status_code == 200


async def test_identifiers_with_nothing_to_normalise(gw: httpx.AsyncClient) -> None:
    # Was 500 (InvalidIdentifier escaped): a national id or postcode of only punctuation.
    person = {"given_name": "Ana", "family_name": "Ruiz", "email": "ana@example.com"}
    response = await gw.post("/api/identity/customers", json={**person, "national_id": "-"})
    assert_refused(response, "body.national_id")
    address = {"street": "Calle Mayor", "locality": "Madrid", "postcode": "-", "country": "ES"}
    response = await gw.post("/api/identity/customers", json={**person, "addresses": [address]})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/identity/customers/%1F",  # the gateway's proxy
        "/api/customers/%1F/360",  # the gateway's own calls to the services
        "/api/interactions/customers/%1F/surveys",  # interactions asking identity about the customer
        "/api/identity/customers/a%25b",
    ],
)
async def test_ids_with_any_character_reach_the_service_intact(gw: httpx.AsyncClient, path: str) -> None:
    # Was 500 (httpx.InvalidURL): the decoded id was put into the upstream URL as it was.
    response = await gw.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_integers_beyond_64_bits_in_free_form_loyalty_fields(gw: httpx.AsyncClient) -> None:
    # Was 500 (TypeError: Integer exceeds 64-bit range) when the definition was stored.
    huge = -(2**63) - 1
    program = {"id": "club", "name": "Club", "currency": "EUR"}
    assert_refused(
        await gw.post("/api/loyalty/programs", json={**program, "settings": {"x": huge}}), "body.settings"
    )
    assert_refused(
        await gw.post("/api/loyalty/programs", json={**program, "expiry_period": 2**64}), "body.expiry_period"
    )
    assert (await gw.post("/api/loyalty/programs", json=program)).status_code == 201
    rule = {"name": "cap", "kind": "cap", "definition": {"max_points": huge, "period": "month"}}
    assert_refused(await gw.post("/api/loyalty/programs/club/rules", json=rule), "body.definition")
    tiers = [{"name": "gold", "threshold": 2**64, "measure": "qualifying_points"}]
    assert_refused(await gw.put("/api/loyalty/programs/club/tiers", json={"tiers": tiers}), "body.tiers")

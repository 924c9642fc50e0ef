"""Protection against over-merging, and attribute validation on profiles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.identity.app import build
from services.identity.settings import load_settings
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime


async def client_for(tmp_path: Path, **settings: Any) -> tuple[ServiceRuntime, httpx.AsyncClient]:
    runtime = build(load_settings(var_dir=tmp_path, **settings), InProcessBus())
    await runtime.start()
    return runtime, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://identity"
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    runtime, client = await client_for(tmp_path, max_customers_per_identifier=3, max_records_per_customer=3)
    yield client
    await client.aclose()
    await runtime.stop()


def person(i: int, **extra: Any) -> dict[str, Any]:
    names = ["Lucas", "Marta", "Iker", "Noa", "Hugo", "Vera", "Leo", "Alba"]
    return {
        "source_system": "pos",
        "source_id": f"s{i}",
        "given_name": names[i % len(names)],
        "family_name": f"Family{i}",
        "birth_date": f"19{70 + i}-02-0{1 + i % 8}",
        **extra,
    }


async def test_an_identifier_shared_by_many_customers_stops_identifying(api: httpx.AsyncClient) -> None:
    shared = {"email": "shop.counter@example.com", "phone": "+34 910 000 000"}
    ids = {(await api.post("/records", json=person(i, **shared))).json()["customer"]["id"] for i in range(3)}
    assert len(ids) == 3
    # Now three customers share the e-mail and phone: a fourth record with them and a name close to
    # the first is not merged on their strength.
    fourth = (await api.post("/records", json=person(0, **shared, source_id="s-new", birth_date=None))).json()
    assert fourth["match"]["outcome"] != "matched"


async def test_a_golden_record_at_its_size_limit_takes_no_more_automatic_merges(
    api: httpx.AsyncClient,
) -> None:
    base = {
        "given_name": "Ana",
        "family_name": "García",
        "email": "ana.garcia@gmail.com",
        "phone": "+34 612 345 678",
        "birth_date": "1988-04-12",
    }
    outcomes = [
        (await api.post("/records", json={**base, "source_system": "web", "source_id": f"w{i}"})).json()[
            "match"
        ]["outcome"]
        for i in range(4)
    ]
    assert outcomes[:3] == ["created", "matched", "matched"]
    assert outcomes[3] == "review"


async def test_blocked_values_never_match(tmp_path: Path) -> None:
    runtime, api = await client_for(tmp_path, blocked_identifiers=["info@company.example"])
    try:
        a = (
            await api.post(
                "/records",
                json={
                    "given_name": "Eva",
                    "family_name": "Lind",
                    "email": "info@company.example",
                    "source_id": "a",
                },
            )
        ).json()
        b = (
            await api.post(
                "/records",
                json={
                    "given_name": "Eva",
                    "family_name": "Lind",
                    "email": "info@company.example",
                    "source_id": "b",
                },
            )
        ).json()
        # Same name only: without the blocked e-mail there is not enough evidence to merge.
        assert b["match"]["outcome"] != "matched"
        assert a["customer"]["id"] != b["customer"]["id"]
    finally:
        await api.aclose()
        await runtime.stop()


async def test_attributes_follow_the_schema(api: httpx.AsyncClient) -> None:
    defined = await api.put(
        "/attribute-definitions/shoe_size", json={"type": "integer", "min_value": 15, "max_value": 55}
    )
    assert defined.status_code in (200, 201), defined.text
    ok = await api.post("/records", json={**person(1), "attributes": {"shoe_size": 42}})
    assert ok.status_code == 201, ok.text
    assert ok.json()["customer"]["attributes"] == {"shoe_size": 42}
    unknown = await api.post("/records", json={**person(2), "attributes": {"hat_size": 7}})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.attributes.hat_size"
    wrong = await api.post("/records", json={**person(3), "attributes": {"shoe_size": "big"}})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "body.attributes.shoe_size"

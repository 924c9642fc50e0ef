"""Errors leave every service as RFC 9457 problem documents naming the field at fault."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from shared.errors import Conflict, InvalidInput
from shared.http import create_app


class Body(BaseModel):
    quantity: int = Field(ge=1)


def make_app() -> FastAPI:
    app = create_app(service="t", title="t", description="t", version="1")

    @app.post("/things")
    async def things(body: Body) -> dict[str, int]:
        if body.quantity == 13:
            raise InvalidInput("body.quantity", "13 is unlucky")
        if body.quantity == 7:
            raise Conflict("already there")
        if body.quantity == 99:
            raise RuntimeError("secret internals")
        return {"quantity": body.quantity}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_malformed_input_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/things", json={"quantity": -1})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/validation-error")
    assert body["errors"][0]["field"] == "body.quantity"
    assert "greater than or equal to 1" in body["errors"][0]["message"]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_domain_rule_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/things", json={"quantity": 13})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body.quantity", "message": "13 is unlucky"}]


async def test_domain_error_carries_its_status(client: httpx.AsyncClient) -> None:
    r = await client.post("/things", json={"quantity": 7})
    assert (r.status_code, r.json()["title"]) == (409, "Conflict")


async def test_unknown_route_is_a_problem_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_unexpected_error_hides_internals(client: httpx.AsyncClient) -> None:
    r = await client.post("/things", json={"quantity": 99})
    assert r.status_code == 500
    assert "secret" not in r.text


async def test_request_id_is_propagated(client: httpx.AsyncClient) -> None:
    r = await client.post("/things", json={"quantity": 2}, headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"

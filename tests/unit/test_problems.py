"""Errors leave every service as RFC 9457 problem documents naming the field at fault."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from shared.errors import Conflict, InvalidInput, database_unavailable
from shared.http import create_app
from shared.messaging.consumer import is_transient


class Body(BaseModel):
    quantity: int = Field(ge=1)


class _PgError(Exception):
    """Shaped like a driver error: the SQLSTATE on `sqlstate`."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.sqlstate = code


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
        if body.quantity == 503:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        if body.quantity == 57:
            raise DBAPIError("SELECT 1", {}, _PgError("the database system is starting up", "57P03"))
        if body.quantity == 409:
            raise StaleDataError("UPDATE statement on table 'customers' expected to update 1 row(s)")
        if body.quantity == 23:
            raise DBAPIError("INSERT", {}, _PgError("duplicate key", "23505"))
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


@pytest.mark.parametrize("quantity", [503, 57])
async def test_a_database_that_is_down_or_restarting_is_a_503_to_retry(
    client: httpx.AsyncClient, quantity: int
) -> None:
    response = await client.post("/things", json={"quantity": quantity})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"].endswith("/service-unavailable")


async def test_other_database_errors_stay_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"quantity": 23})
    assert response.status_code == 500


def test_consumers_retry_what_the_gateway_calls_unavailable() -> None:
    starting = DBAPIError("SELECT 1", {}, _PgError("the database system is starting up", "57P03"))
    deadlock = DBAPIError("UPDATE", {}, _PgError("deadlock detected", "40P01"))
    duplicate = DBAPIError("INSERT", {}, _PgError("duplicate key", "23505"))
    assert database_unavailable(starting)
    assert is_transient(starting)
    assert is_transient(deadlock)
    assert not database_unavailable(deadlock)
    assert not is_transient(duplicate)
    assert not database_unavailable(duplicate)


async def test_a_lost_optimistic_concurrency_race_is_a_409_to_retry(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"quantity": 409})
    assert response.status_code == 409
    assert "Retry" in response.json()["detail"]

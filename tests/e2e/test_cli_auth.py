"""`crm users`, `crm keys` and `crm auth rotate-keys` against the gateway's database, and the key
they make works at the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app as cli
from tests.support.auth import auth_gateway, auth_platform, login

pytestmark = pytest.mark.auth


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


async def run(*args: str) -> str:
    return await asyncio.to_thread(invoke, *args)  # the CLI runs its own event loop


async def test_users_keys_and_rotation_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("CRM_GATEWAY_DATABASE_URL", raising=False)
    await run(
        "users",
        "create",
        "lucia",
        "--role",
        "support",
        "--branch",
        "MAD-01",
        "--password",
        "lucia-password-1",
    )
    assert "lucia" in await run("users", "list")
    key = (await run("keys", "create", "--name", "importer")).strip().splitlines()[-1].split()[-1]
    assert key.startswith("crm_")
    key_id = key.removeprefix("crm_").split(".")[0]
    listed = await run("keys", "list")
    assert key_id in listed
    assert key.split(".")[1] not in listed
    assert "New signing key" in await run("auth", "rotate-keys")

    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        assert (
            await gw.get("/api/identity/attribute-definitions", headers={"x-api-key": key})
        ).status_code == 200
        await login(gw, "lucia", "lucia-password-1")
        users = [u["username"] for u in await app.state.auth_store.list_users()]
        assert users == ["lucia"]  # users existed: no bootstrap admin was added
        await run("keys", "revoke", key_id)
        app.state.api_key_cache.clear()
        assert (
            await gw.get("/api/identity/attribute-definitions", headers={"x-api-key": key})
        ).status_code == 401
        await run("users", "disable", "lucia")
        bad = await gw.post(
            "/auth/token",
            data={"grant_type": "password", "username": "lucia", "password": "lucia-password-1"},
        )
        assert bad.status_code == 401

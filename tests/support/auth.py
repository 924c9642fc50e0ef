"""Authentication for tests: real logins through the gateway, and a test key set for unit tests.

Gateway-level tests build the embedded platform with authentication on (`auth_platform`), log in as
the bootstrap admin (`ADMIN_PASSWORD`) and send the token on every request (`login` / `authed`).
Unit tests that need a token without a gateway mint one from `TestKeys`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.gateway.settings import load_settings as gateway_settings
from services.platform import Platform, build_platform
from shared.auth.keys import LocalKeySet, SigningKey
from shared.auth.tokens import Principal, TokenIssuer, TokenVerifier

ADMIN_PASSWORD = "test-admin-password-1"
ISSUER = "crm-gateway"
AUDIENCE = "crm"


def auth_platform(var_dir: Path) -> Platform:
    return build_platform(var_dir=var_dir, auth_enabled=True)


def auth_gateway(platform: Platform, var_dir: Path, **settings: Any) -> FastAPI:
    return platform.gateway(
        gateway_settings(var_dir=var_dir, auth_enabled=True, admin_password=ADMIN_PASSWORD, **settings)
    )


async def login(client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    response = await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def authed(client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    """Log in and make every further request of `client` carry the token."""
    token = await login(client, username, password)
    client.headers["authorization"] = f"Bearer {token}"
    return token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class TestKeys:
    """A key set and an issuer for unit tests."""

    __test__ = False

    def __init__(self, ttl_seconds: int = 300) -> None:
        self.key = SigningKey.generate()
        self.keys = LocalKeySet({"keys": [self.key.public_jwk()]})
        self.issuer = TokenIssuer(self.key, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=ttl_seconds)
        self.verifier = TokenVerifier(self.keys, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0)

    def token(self, kind: str = "user", roles: tuple[str, ...] = ("admin",), **claims: Any) -> str:
        principal = Principal(sub=claims.pop("sub", "tester"), kind=kind, roles=frozenset(roles), **claims)
        return self.issuer.issue(principal)[0]

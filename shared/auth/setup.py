"""Wiring a service's authentication from its settings.

Distributed mode: the service verifies tokens with the gateway's JWKS (`CRM_AUTH_JWKS_URL`).
Embedded mode (`services/platform.py`) swaps in the key set the gateway fills in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI

from shared.auth.guard import AuthContext
from shared.auth.keys import KeySource, LocalKeySet, RemoteKeySet, SigningKey
from shared.auth.tokens import Principal, TokenIssuer, TokenVerifier
from shared.logging import get_logger
from shared.settings import PlatformSettings

log = get_logger(__name__)


def warn_if_disabled(settings: PlatformSettings, service: str) -> None:
    if not settings.auth_enabled:
        log.warning(
            "AUTHENTICATION_DISABLED",
            service=service,
            message=(
                "!!! CRM_AUTH_ENABLED=false: every request is accepted without a token. "
                "Never do this outside local development. !!!"
            ),
        )


def verifier_for(settings: PlatformSettings, keys: KeySource) -> TokenVerifier:
    return TokenVerifier(
        keys,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
    )


def remote_keys(settings: PlatformSettings) -> RemoteKeySet:
    return RemoteKeySet(
        settings.auth_jwks_url,
        cache_seconds=settings.auth_jwks_cache_seconds,
        min_refetch_seconds=settings.auth_jwks_min_refetch_seconds,
    )


def install_service_auth(app: FastAPI, settings: PlatformSettings, service: str) -> AuthContext:
    warn_if_disabled(settings, service)
    auth = AuthContext(
        service=service,
        enabled=settings.auth_enabled,
        verifier=verifier_for(settings, remote_keys(settings)) if settings.auth_enabled else None,
    )
    app.state.auth = auth
    return auth


def use_keys(app: FastAPI, settings: PlatformSettings, keys: KeySource) -> None:
    """Verify with `keys` (embedded mode: the gateway's in-process key set)."""
    auth: AuthContext = app.state.auth
    auth.verifier = verifier_for(settings, keys)


def in_process_service_token(
    settings: PlatformSettings, *apps: FastAPI
) -> Callable[[], Awaitable[str | None]]:
    """For a trusted local process (a CLI job with the databases at hand) running service apps without
    a gateway: an ephemeral signing key the given apps trust, and a service principal's tokens."""
    key = SigningKey.generate()
    keys = LocalKeySet({"keys": [key.public_jwk()]})
    for app in apps:
        use_keys(app, settings, keys)
    issuer = TokenIssuer(key, issuer=settings.auth_issuer, audience=settings.auth_audience, ttl_seconds=3600)

    async def token() -> str | None:
        return issuer.issue(Principal(sub="cli", kind="service", roles=frozenset({"service"})))[0]

    return token


class ClientCredentials:
    """A service principal's token from the gateway's token endpoint (OAuth2 client credentials),
    cached until shortly before it expires. For service-to-service calls made outside a request."""

    def __init__(self, token_url: str, client_id: str, client_secret: str) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        async with self._lock:
            if self._token and time.monotonic() < self._expires - 30:
                return self._token
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.post(
                        self.token_url,
                        data={"grant_type": "client_credentials"},
                        auth=(self.client_id, self.client_secret),
                    )
                response.raise_for_status()
                body = response.json()
            except Exception as exc:
                log.warning("service_token_failed", url=self.token_url, error=repr(exc))
                return None
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in", 60))
            return self._token


def service_token_provider(settings: PlatformSettings) -> ClientCredentials | None:
    if settings.auth_client_id and settings.auth_client_secret.get_secret_value():
        return ClientCredentials(
            settings.auth_token_url, settings.auth_client_id, settings.auth_client_secret.get_secret_value()
        )
    return None

"""Signing keys and key sets: Ed25519 (JWS `EdDSA`), published as a JWKS.

The gateway holds the private keys (in its database, see `services/gateway/auth/keystore.py`) and
signs every access token; every service verifies them with the public keys only:

* `LocalKeySet` — a key set in this process (embedded mode: the gateway fills it, the services read
  it; no HTTP involved);
* `RemoteKeySet` — the gateway's `GET /auth/jwks.json`, fetched on first use, cached, refreshed
  every `cache_seconds` and re-fetched at once when a token names an unknown `kid` (at most once
  every `min_refetch_seconds`, so a flood of forged `kid`s cannot turn into a flood of fetches).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from shared.logging import get_logger

log = get_logger(__name__)

ALGORITHM = "EdDSA"
"""The only JWS algorithm the platform signs with and accepts (never `none`, never HMAC)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or uuid.uuid4().hex[:16], Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk(self.kid, self.public_key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, kid: str, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return cls(kid, key)


def public_jwk(kid: str, key: Ed25519PublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key, as_dict=True)
    return {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey | None:
    """The public key of one JWKS entry, or None for anything but an Ed25519 signing key."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    try:
        key = OKPAlgorithm.from_jwk(jwk)
    except Exception:
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


class KeySource(Protocol):
    async def get(self, kid: str) -> Ed25519PublicKey | None: ...


class LocalKeySet:
    """Public keys by `kid`, held in this process. The gateway's key store replaces them on rotation."""

    def __init__(self, jwks: dict[str, Any] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        if jwks:
            self.replace(jwks)

    def replace(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            key = key_from_jwk(jwk)
            if key is not None and isinstance(jwk.get("kid"), str):
                keys[jwk["kid"]] = key
        self._keys = keys

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def get_now(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)


class RemoteKeySet:
    """The gateway's JWKS over HTTP, cached (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._client = client
        self._keys = LocalKeySet()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        now = time.monotonic()
        stale = self._fetched_at is None or now - self._fetched_at > self.cache_seconds
        key = self._keys.get_now(kid)
        if key is not None and not stale:
            return key
        await self._refresh(force=key is None)
        return self._keys.get_now(kid)

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self.min_refetch_seconds:
                return  # rate-limited: answer from what we have
            if not force and self._fetched_at is not None and now - self._fetched_at <= self.cache_seconds:
                return
            self._attempted_at = now
            try:
                client = self._client or httpx.AsyncClient(timeout=5)
                try:
                    response = await client.get(self.url)
                finally:
                    if self._client is None:
                        await client.aclose()
                response.raise_for_status()
                self._keys.replace(response.json())
                self._fetched_at = now
                self.fetches += 1
            except Exception as exc:
                log.warning("jwks_fetch_failed", url=self.url, error=repr(exc))

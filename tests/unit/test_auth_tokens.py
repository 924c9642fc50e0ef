"""Access tokens: only untampered, unexpired EdDSA tokens from a known key pass; the JWKS is fetched
again for an unknown key id, but not more often than allowed."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shared.auth.keys import LocalKeySet, RemoteKeySet, SigningKey
from shared.auth.tokens import InvalidToken, Principal, TokenIssuer, TokenVerifier
from tests.support.auth import AUDIENCE, ISSUER, TestKeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_valid_token_gives_its_principal() -> None:
    keys = TestKeys()
    token = keys.token("member", ("member",), customer_id="c-1")
    principal = await keys.verifier.verify(token)
    assert principal.kind == "member"
    assert principal.customer_id == "c-1"
    assert principal.roles == {"member"}
    assert principal.token == token


async def test_a_tampered_payload_is_refused() -> None:
    keys = TestKeys()
    header, payload, signature = keys.token(roles=("analyst",)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(InvalidToken):
        await keys.verifier.verify(forged)


async def test_an_expired_token_is_refused() -> None:
    keys = TestKeys()
    token = jwt.encode(
        {
            "sub": "x",
            "kind": "user",
            "roles": ["admin"],
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(time.time()) - 120,
            "exp": int(time.time()) - 60,
        },
        keys.key.private_key,
        algorithm="EdDSA",
        headers={"kid": keys.key.kid},
    )
    with pytest.raises(InvalidToken, match="expired"):
        await keys.verifier.verify(token)


async def test_alg_none_is_refused() -> None:
    keys = TestKeys()
    claims = {
        "sub": "x",
        "kind": "user",
        "roles": ["admin"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    header = {"alg": "none", "typ": "JWT", "kid": keys.key.kid}
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    with pytest.raises(InvalidToken, match="not accepted"):
        await keys.verifier.verify(unsigned)


async def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """The classic algorithm confusion: an HMAC token keyed with the (public) verification key."""
    keys = TestKeys()
    public_pem = keys.key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = keys.key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    claims = {
        "sub": "x",
        "kind": "user",
        "roles": ["admin"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    for secret in (public_pem, raw):
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": keys.key.kid}).encode())
        body = _b64(json.dumps(claims).encode())
        import hashlib
        import hmac

        signature = _b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
        with pytest.raises(InvalidToken, match="not accepted"):
            await keys.verifier.verify(f"{header}.{body}.{signature}")


async def test_a_token_signed_by_another_key_is_refused() -> None:
    keys = TestKeys()
    stranger = SigningKey.generate(kid=keys.key.kid)  # same kid, different key
    issuer = TokenIssuer(stranger, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
    token = issuer.issue(Principal(sub="x", kind="user", roles=frozenset({"admin"})))[0]
    with pytest.raises(InvalidToken):
        await keys.verifier.verify(token)
    unknown = TokenIssuer(SigningKey.generate(), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
    with pytest.raises(InvalidToken, match="unknown key"):
        await keys.verifier.verify(unknown.issue(Principal(sub="x", kind="user"))[0])


async def test_wrong_audience_or_issuer_is_refused() -> None:
    keys = TestKeys()
    other = TokenIssuer(keys.key, issuer=ISSUER, audience="someone-else", ttl_seconds=60)
    with pytest.raises(InvalidToken):
        await keys.verifier.verify(other.issue(Principal(sub="x", kind="user"))[0])
    other = TokenIssuer(keys.key, issuer="evil", audience=AUDIENCE, ttl_seconds=60)
    with pytest.raises(InvalidToken):
        await keys.verifier.verify(other.issue(Principal(sub="x", kind="user"))[0])


async def test_garbage_and_member_tokens_without_customer_are_refused() -> None:
    keys = TestKeys()
    for bad in ("", "abc", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30."):
        with pytest.raises(InvalidToken):
            await keys.verifier.verify(bad)
    with pytest.raises(InvalidToken, match="customer"):
        await keys.verifier.verify(keys.token("member", ("member",)))


class JwksServer:
    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.calls = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(200, json={"keys": [k.public_jwk() for k in self.keys]})


async def test_remote_key_set_refetches_on_unknown_kid_rate_limited() -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    server = JwksServer(first)
    client = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    remote = RemoteKeySet("http://gw/auth/jwks.json", client=client, min_refetch_seconds=0.0)
    verifier = TokenVerifier(remote, issuer=ISSUER, audience=AUDIENCE)

    def token(key: SigningKey) -> str:
        return TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60).issue(
            Principal(sub="svc", kind="service", roles=frozenset({"service"}))
        )[0]

    assert (await verifier.verify(token(first))).sub == "svc"
    assert server.calls == 1
    await verifier.verify(token(first))
    assert server.calls == 1  # cached
    server.keys.append(second)  # the gateway rotated
    assert (await verifier.verify(token(second))).sub == "svc"
    assert server.calls == 2  # unknown kid: fetched again

    # Unknown kids at a high rate do not turn into a fetch each.
    limited = RemoteKeySet("http://gw/auth/jwks.json", client=client, min_refetch_seconds=60)
    before = server.calls
    for _ in range(20):
        assert await limited.get("no-such-kid") is None
    assert server.calls == before + 1
    await client.aclose()


async def test_local_key_set_ignores_foreign_keys() -> None:
    key = SigningKey.generate()
    keys = LocalKeySet(
        {
            "keys": [
                key.public_jwk(),
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                {"kty": "RSA", "kid": "r"},
            ]
        }
    )
    assert keys.kids() == [key.kid]


class TestVerifiedTokensRemembered:
    """A client sends the same token with every call: its signature is checked once, while its expiry
    and its key's presence in the key set are checked every time."""

    @pytest.fixture
    def decodes(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        calls: list[str] = []
        decode = jwt.decode

        def counting(token: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(token)
            return decode(token, *args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counting)
        return calls

    async def test_the_signature_is_checked_once(self, decodes: list[str]) -> None:
        keys = TestKeys()
        token = keys.token("member", ("member",), customer_id="c-1")
        principals = [await keys.verifier.verify(token) for _ in range(5)]
        assert len(decodes) == 1
        assert {p.customer_id for p in principals} == {"c-1"}
        await keys.verifier.verify(keys.token())  # another token: checked in full
        assert len(decodes) == 2

    async def test_a_remembered_token_expires(self) -> None:
        keys = TestKeys(ttl_seconds=1)  # (leeway 0)
        token = keys.token()
        await keys.verifier.verify(token)
        await asyncio.sleep(1.6)
        with pytest.raises(InvalidToken, match="expired"):
            await keys.verifier.verify(token)

    async def test_a_remembered_token_of_a_withdrawn_key_is_refused(self) -> None:
        keys = TestKeys()
        token = keys.token()
        await keys.verifier.verify(token)
        keys.keys.replace({"keys": [SigningKey.generate().public_jwk()]})  # rotated, old key gone
        with pytest.raises(InvalidToken, match="unknown key"):
            await keys.verifier.verify(token)

    async def test_a_refused_token_is_not_remembered(self, decodes: list[str]) -> None:
        keys = TestKeys()
        header, payload, _ = keys.token().split(".")
        forged = f"{header}.{payload}.{_b64(b'x' * 64)}"
        for _ in range(2):
            with pytest.raises(InvalidToken):
                await keys.verifier.verify(forged)
        assert len(decodes) == 2

    async def test_how_many_are_remembered_is_bounded(self, decodes: list[str]) -> None:
        keys = TestKeys()
        verifier = TokenVerifier(keys.keys, issuer=ISSUER, audience=AUDIENCE, remember=2)
        first, second, third = (keys.token(sub=f"u{i}") for i in range(3))
        for token in (first, second, third, third, second, first):
            await verifier.verify(token)
        assert len(decodes) == 4  # first was forgotten when third came, then checked again

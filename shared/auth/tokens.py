"""Access tokens: short-lived JWTs signed by the gateway (EdDSA), verified by everyone.

Claims:

* `iss` / `aud` — the platform's issuer and audience (`CRM_AUTH_ISSUER`, `CRM_AUTH_AUDIENCE`);
* `sub` — who: a user name, a client id, an API key id, a member credential id or a service name;
* `kind` — `user`, `client`, `apikey`, `member` or `service`;
* `roles` — role names (see `shared.auth.policy`); `scope` — optional space-separated permissions
  narrowing what the roles grant (API keys and clients may be scoped);
* `cid` — the customer id a member token speaks for; `branch` — the branch a staff user is limited to;
* `jti`, `iat`, `nbf`, `exp` — the usual; lifetime `CRM_GATEWAY_AUTH_ACCESS_TTL_SECONDS`.

Verification whitelists `EdDSA`: an `alg: none`, an HMAC token keyed with the public key or a token
signed by a key not in the key set are refused, as are expired and tampered ones.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from shared.auth.keys import ALGORITHM, KeySource, SigningKey

KINDS = frozenset({"user", "client", "apikey", "member", "service"})


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (safe to show the caller)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as a verified token says."""

    sub: str
    kind: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None
    customer_id: str | None = None
    branch: str | None = None
    token: str | None = field(default=None, repr=False, compare=False)
    jti: str | None = None
    expires_at: int | None = None

    @property
    def actor(self) -> str:
        """How audit trails name this caller: `user:ana`, `member:<customer id>`, `apikey:<id>`..."""
        if self.kind == "member":
            return f"member:{self.customer_id}"
        return f"{self.kind}:{self.sub}"

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sub": self.sub, "kind": self.kind, "roles": sorted(self.roles)}
        if self.scopes is not None:
            out["scope"] = " ".join(sorted(self.scopes))
        if self.customer_id is not None:
            out["cid"] = self.customer_id
        if self.branch is not None:
            out["branch"] = self.branch
        return out


class TokenIssuer:
    """Signs access tokens with the current signing key (the gateway, or tests)."""

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, principal: Principal, *, ttl_seconds: int | None = None) -> tuple[str, int]:
        """A signed token for `principal` and its lifetime in seconds."""
        ttl = ttl_seconds or self.ttl_seconds
        now = int(time.time())
        claims = {
            **principal.claims(),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})
        return token, ttl


class TokenVerifier:
    """Checks tokens; a token already verified is recognised again without redoing the signature
    check (its expiry, and that its key is still in the key set, are checked on every use)."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float = 5.0,
        remember: int = 4096,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.remember = remember
        # token → (principal, kid): a client sends the same token with every call for its lifetime.
        self._verified: OrderedDict[str, tuple[Principal, str]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            principal, kid = known
            if (
                principal.expires_at is not None
                and time.time() <= principal.expires_at + self.leeway
                and await self.keys.get(kid) is not None
            ):
                if token in self._verified:  # (another call may have dropped it while we awaited)
                    self._verified.move_to_end(token)
                return principal
            self._verified.pop(token, None)  # expired or its key withdrawn: the full check says why
        principal, kid = await self._verify(token)
        if principal.expires_at is not None and self.remember > 0:
            self._verified[token] = (principal, kid)
            if len(self._verified) > self.remember:
                self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self.keys.get(kid)
        if key is None:
            raise InvalidToken("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        return principal_from_claims(claims, token), kid


def principal_from_claims(claims: dict[str, Any], token: str | None = None) -> Principal:
    kind = claims.get("kind")
    if kind not in KINDS:
        raise InvalidToken("token has no valid kind")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("token roles are malformed")
    scope = claims.get("scope")
    customer_id = claims.get("cid")
    if kind == "member" and not isinstance(customer_id, str):
        raise InvalidToken("member token without a customer id")
    branch = claims.get("branch")
    return Principal(
        sub=str(claims["sub"]),
        kind=kind,
        roles=frozenset(roles),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else None,
        customer_id=customer_id if isinstance(customer_id, str) else None,
        branch=branch if isinstance(branch, str) else None,
        token=token,
        jti=claims.get("jti"),
        expires_at=claims.get("exp"),
    )

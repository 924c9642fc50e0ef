"""The gateway's authentication store: who may log in, and the keys tokens are signed with.

* Staff users: argon2id password hashes (argon2-cffi), roles, an optional branch.
* Clients (OAuth2 client credentials) and API keys: random secrets shown once at creation and
  stored as SHA-256 digests (high-entropy secrets need no slow hash); roles, optional scopes; API
  keys also expire and can be revoked.
* Member credentials: a customer's e-mail and argon2 password, linked to their customer id.
* Refresh tokens: opaque, stored hashed, single use. Each use rotates it (a new token in the same
  family); presenting a used or revoked one again is a reuse — the whole family is revoked.
* Signing keys: Ed25519, the private half encrypted with a key derived from `CRM_SECRET_KEY`. The
  newest unretired key signs; rotating retires it, and a retired key stays in the JWKS until every
  token it signed has expired (access TTL + leeway), then it is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.gateway.auth.models import (
    api_keys,
    clients,
    member_credentials,
    refresh_tokens,
    signing_keys,
    users,
)
from services.gateway.settings import GatewaySettings
from shared.auth import policy
from shared.auth.keys import ALGORITHM, LocalKeySet, SigningKey
from shared.auth.tokens import Principal, TokenIssuer
from shared.db import session_factory
from shared.errors import Conflict, InvalidInput, NotFound, Unauthorized
from shared.logging import get_logger

log = get_logger(__name__)

API_KEY_PREFIX = "crm_"
REFRESH_PREFIX = "rt_"
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")


def now() -> datetime:
    return datetime.now(UTC)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (an unknown name still costs one argon2 verify)."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _fernet(settings: GatewaySettings) -> Fernet:
    material = hashlib.sha256(b"crm-signing-keys:" + settings.secret_key.get_secret_value().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(material))


def _invalid_grant(detail: str = "invalid credentials") -> Unauthorized:
    exc = Unauthorized(detail)
    exc.headers = {"WWW-Authenticate": 'Bearer realm="crm", error="invalid_grant"'}
    return exc


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.refresh_token:
            out["refresh_token"] = self.refresh_token
        if self.scope:
            out["scope"] = self.scope
        return out


class AuthStore:
    def __init__(self, settings: GatewaySettings, engine: AsyncEngine, keys: LocalKeySet) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = session_factory(engine)
        self.keys = keys
        self.issuer: TokenIssuer | None = None
        self._fernet = _fernet(settings)
        self._service_token: tuple[str, float] | None = None

    # --- signing keys ---------------------------------------------------------------------------

    @property
    def key_grace(self) -> timedelta:
        """How long a retired key stays published: until every token it signed has expired."""
        longest = max(self.settings.auth_access_ttl_seconds, self.settings.auth_apikey_token_ttl_seconds)
        # + the reload interval: another replica may keep signing with it until it reloads the keys.
        reload = self.settings.auth_key_check_interval_seconds
        return timedelta(seconds=longest + reload + self.settings.auth_leeway_seconds + 60)

    async def load_keys(self) -> None:
        """(Re)load the key set and the signing key from the database; make one if there is none."""
        async with self.sessions() as session:
            rows = (await session.execute(select(signing_keys).order_by(signing_keys.c.created_at))).all()
        active = [r for r in rows if r.retired_at is None]
        signer: SigningKey | None = None
        if active:
            newest = active[-1]
            try:
                pem = self._fernet.decrypt(newest.private_key.encode())
                signer = SigningKey.from_pem(newest.kid, pem)
            except (InvalidToken, ValueError):
                log.error("signing_key_unreadable", kid=newest.kid, hint="CRM_SECRET_KEY changed? rotating")
        if signer is None:
            await self.rotate()
            return
        self.keys.replace({"keys": [r.public_jwk for r in rows]})
        self._set_signer(signer)

    def _set_signer(self, key: SigningKey) -> None:
        if self.issuer is None or self.issuer.key.kid != key.kid:
            self.issuer = TokenIssuer(
                key,
                issuer=self.settings.auth_issuer,
                audience=self.settings.auth_audience,
                ttl_seconds=self.settings.auth_access_ttl_seconds,
            )
            self._service_token = None

    async def rotate(self) -> str:
        """A new signing key; the current one is retired (still published until its tokens expire)."""
        key = SigningKey.generate()
        at = now()
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=at)
            )
            await session.execute(
                signing_keys.insert().values(
                    kid=key.kid,
                    algorithm=ALGORITHM,
                    private_key=self._fernet.encrypt(key.private_pem()).decode(),
                    public_jwk=key.public_jwk(),
                    created_at=at,
                )
            )
            await session.execute(delete(signing_keys).where(signing_keys.c.retired_at < at - self.key_grace))
        log.info("signing_key_rotated", kid=key.kid)
        async with self.sessions() as session:
            rows = (await session.execute(select(signing_keys.c.public_jwk))).all()
        self.keys.replace({"keys": [r.public_jwk for r in rows]})
        self._set_signer(key)
        return key.kid

    async def maintain_keys(self) -> None:
        """Rotate when the signing key is older than `auth_key_max_age_seconds`; drop expired retired
        keys; pick up keys another gateway replica made."""
        async with self.sessions() as session:
            newest = (
                await session.execute(
                    select(signing_keys.c.created_at)
                    .where(signing_keys.c.retired_at.is_(None))
                    .order_by(signing_keys.c.created_at.desc())
                    .limit(1)
                )
            ).scalar()
        if newest is None or now() - newest > timedelta(seconds=self.settings.auth_key_max_age_seconds):
            await self.rotate()
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(signing_keys).where(signing_keys.c.retired_at < now() - self.key_grace)
            )
        await self.load_keys()

    def jwks(self) -> dict[str, Any]:
        from shared.auth.keys import public_jwk

        return {"keys": [public_jwk(kid, key) for kid in self.keys.kids() if (key := self.keys.get_now(kid))]}

    def issue(self, principal: Principal, *, ttl_seconds: int | None = None) -> tuple[str, int]:
        if self.issuer is None:
            raise RuntimeError("the key store is not loaded")
        return self.issuer.issue(principal, ttl_seconds=ttl_seconds)

    def service_token(self, name: str = "gateway") -> str:
        """A service principal's token (cached), for the gateway's own calls to the services."""
        import time

        if self._service_token is not None and self._service_token[1] > time.monotonic() + 60:
            return self._service_token[0]
        token, ttl = self.issue(Principal(sub=name, kind="service", roles=frozenset({policy.Role.SERVICE})))
        self._service_token = (token, time.monotonic() + ttl)
        return token

    # --- staff users -------------------------------------------------------------------------------

    async def create_user(
        self, username: str, password: str, roles: list[str], branch: str | None = None
    ) -> dict[str, Any]:
        policy.valid_roles(roles)
        if policy.Role.MEMBER in roles or policy.Role.SERVICE in roles:
            raise InvalidInput("body.roles", "member and service are not staff roles")
        if len(password) < 12:
            raise InvalidInput("body.password", "at least 12 characters")
        async with self.sessions() as session, session.begin():
            if (await session.execute(select(users.c.username).where(users.c.username == username))).first():
                raise Conflict(f"user {username!r} exists")
            row = {
                "username": username,
                "password_hash": hash_password(password),
                "roles": sorted(set(roles)),
                "branch": branch,
                "disabled": False,
                "created_at": now(),
            }
            await session.execute(users.insert().values(**row))
        return _user_out(row)

    async def list_users(self) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(users).order_by(users.c.username))).mappings().all()
        return [_user_out(dict(r)) for r in rows]

    async def count_users(self) -> int:
        async with self.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(users))).scalar() or 0)

    async def update_user(
        self,
        username: str,
        *,
        disabled: bool | None = None,
        roles: list[str] | None = None,
        branch: str | None = None,
        clear_branch: bool = False,
        password: str | None = None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if disabled is not None:
            values["disabled"] = disabled
        if roles is not None:
            policy.valid_roles(roles)
            values["roles"] = sorted(set(roles))
        if branch is not None or clear_branch:
            values["branch"] = branch
        if password is not None:
            values["password_hash"] = hash_password(password)
        async with self.sessions() as session, session.begin():
            if values:
                result = await session.execute(
                    update(users).where(users.c.username == username).values(**values)
                )
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    raise NotFound(f"no user {username!r}")
            if disabled:  # a disabled user's refresh tokens die with the account
                await session.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.subject_kind == "user", refresh_tokens.c.subject == username)
                    .values(revoked_at=now())
                )
            row = (
                (await session.execute(select(users).where(users.c.username == username))).mappings().first()
            )
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _user_out(dict(row))

    async def login_user(self, username: str, password: str) -> IssuedTokens:
        async with self.sessions() as session:
            row = (await session.execute(select(users).where(users.c.username == username))).first()
        if not check_password(row.password_hash if row else None, password) or row is None or row.disabled:
            raise _invalid_grant()
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(users).where(users.c.username == username).values(last_login_at=now())
            )
        principal = Principal(sub=row.username, kind="user", roles=frozenset(row.roles), branch=row.branch)
        return await self._with_refresh(principal, "user", row.username)

    async def _user_principal(self, username: str) -> Principal | None:
        async with self.sessions() as session:
            row = (await session.execute(select(users).where(users.c.username == username))).first()
        if row is None or row.disabled:
            return None
        return Principal(sub=row.username, kind="user", roles=frozenset(row.roles), branch=row.branch)

    # --- members ---------------------------------------------------------------------------------

    async def create_member(self, email: str, password: str, customer_id: str) -> dict[str, Any]:
        if len(password) < 10:
            raise InvalidInput("body.password", "at least 10 characters")
        email = email.strip().lower()
        row = {
            "id": str(uuid.uuid4()),
            "email": email,
            "password_hash": hash_password(password),
            "customer_id": customer_id,
            "disabled": False,
            "created_at": now(),
        }
        async with self.sessions() as session, session.begin():
            exists = (
                await session.execute(
                    select(member_credentials.c.id).where(member_credentials.c.email == email)
                )
            ).first()
            if exists:
                raise Conflict(f"a member login for {email} exists")
            await session.execute(member_credentials.insert().values(**row))
        return _member_out(row)

    async def list_members(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        query = select(member_credentials).order_by(member_credentials.c.created_at)
        if customer_id:
            query = query.where(member_credentials.c.customer_id == customer_id)
        async with self.sessions() as session:
            rows = (await session.execute(query)).mappings().all()
        return [_member_out(dict(r)) for r in rows]

    async def customer_of_member_login(self, credential_id: str) -> str | None:
        """Whose member login this is (branch limits: `policy.OWNERS`); None: no such login."""
        async with self.sessions() as session:
            found = await session.scalar(
                select(member_credentials.c.customer_id).where(member_credentials.c.id == credential_id)
            )
        return str(found) if found is not None else None

    async def disable_member(self, credential_id: str) -> None:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(member_credentials)
                .where(member_credentials.c.id == credential_id)
                .values(disabled=True)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no member login {credential_id}")
            await session.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.subject_kind == "member", refresh_tokens.c.subject == credential_id)
                .values(revoked_at=now())
            )

    async def login_member(self, email: str, password: str) -> IssuedTokens:
        email = email.strip().lower()
        async with self.sessions() as session:
            row = (
                await session.execute(select(member_credentials).where(member_credentials.c.email == email))
            ).first()
        if not check_password(row.password_hash if row else None, password) or row is None or row.disabled:
            raise _invalid_grant()
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(member_credentials)
                .where(member_credentials.c.id == row.id)
                .values(last_login_at=now())
            )
        return await self._with_refresh(_member_principal(row), "member", row.id)

    async def member_principal_for(self, customer_id: str) -> Principal:
        """Token exchange: a member token for `customer_id` (who must have an active member login)."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(member_credentials).where(
                        member_credentials.c.customer_id == customer_id,
                        member_credentials.c.disabled.is_(False),
                    )
                )
            ).first()
        if row is None:
            raise _invalid_grant("no active member login for this customer")
        return _member_principal(row)

    # --- refresh tokens -------------------------------------------------------------------------

    async def _with_refresh(self, principal: Principal, kind: str, subject: str) -> IssuedTokens:
        access, ttl = self.issue(principal)
        refresh = await self._new_refresh(kind, subject, family=uuid.uuid4().hex)
        return IssuedTokens(access, ttl, refresh)

    async def _new_refresh(self, kind: str, subject: str, *, family: str) -> str:
        token_id = uuid.uuid4().hex
        secret = secrets.token_urlsafe(32)
        async with self.sessions() as session, session.begin():
            await session.execute(
                refresh_tokens.insert().values(
                    id=token_id,
                    token_hash=digest(secret),
                    family_id=family,
                    subject_kind=kind,
                    subject=subject,
                    created_at=now(),
                    expires_at=now() + timedelta(seconds=self.settings.auth_refresh_ttl_seconds),
                )
            )
        return f"{REFRESH_PREFIX}{token_id}.{secret}"

    async def _find_refresh(self, token: str) -> Any:
        token_id, _, secret = token.removeprefix(REFRESH_PREFIX).partition(".")
        async with self.sessions() as session:
            row = (
                await session.execute(select(refresh_tokens).where(refresh_tokens.c.id == token_id))
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest(secret)):
            return None
        return row

    async def refresh(self, token: str) -> IssuedTokens:
        row = await self._find_refresh(token)
        if row is None:
            raise _invalid_grant("unknown refresh token")
        at = now()
        async with self.sessions() as session, session.begin():
            # Claim it: exactly one concurrent use wins; any other (or later) use is a reuse.
            claimed = await session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.id == row.id,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(used_at=at)
            )
            reused = claimed.rowcount == 0  # type: ignore[attr-defined]
            if reused:
                await session.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.family_id == row.family_id, refresh_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=at)
                )
        if reused:
            log.warning("refresh_token_reuse", family=row.family_id, subject=row.subject)
            raise _invalid_grant("refresh token already used: every token of this session is revoked")
        if row.expires_at < at:
            raise _invalid_grant("refresh token expired")
        principal = await self._subject_principal(row.subject_kind, row.subject)
        if principal is None:
            raise _invalid_grant("the account is disabled")
        access, ttl = self.issue(principal)
        new_refresh = await self._new_refresh(row.subject_kind, row.subject, family=row.family_id)
        return IssuedTokens(access, ttl, new_refresh)

    async def revoke_refresh(self, token: str) -> None:
        """RFC 7009: revoking an unknown token is not an error. Revokes the whole family (the session)."""
        row = await self._find_refresh(token)
        if row is None:
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.family_id == row.family_id, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )

    async def _subject_principal(self, kind: str, subject: str) -> Principal | None:
        if kind == "user":
            return await self._user_principal(subject)
        async with self.sessions() as session:
            row = (
                await session.execute(select(member_credentials).where(member_credentials.c.id == subject))
            ).first()
        if row is None or row.disabled:
            return None
        return _member_principal(row)

    # --- clients (OAuth2 client credentials) ------------------------------------------------------

    async def create_client(
        self, name: str, roles: list[str], scopes: list[str] | None = None, client_id: str | None = None
    ) -> dict[str, Any]:
        policy.valid_roles(roles)
        _check_scopes(scopes)
        if policy.Role.MEMBER in roles:
            raise InvalidInput("body.roles", "a client cannot be a member")
        client_id = client_id or f"cli_{uuid.uuid4().hex[:16]}"
        secret = secrets.token_urlsafe(32)
        row = {
            "client_id": client_id,
            "secret_hash": digest(secret),
            "name": name,
            "roles": sorted(set(roles)),
            "scopes": sorted(set(scopes)) if scopes is not None else None,
            "disabled": False,
            "created_at": now(),
        }
        async with self.sessions() as session, session.begin():
            if (
                await session.execute(select(clients.c.client_id).where(clients.c.client_id == client_id))
            ).first():
                raise Conflict(f"client {client_id} exists")
            await session.execute(clients.insert().values(**row))
        return {**_client_out(row), "client_secret": secret}

    async def list_clients(self) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(clients).order_by(clients.c.created_at))).mappings().all()
        return [_client_out(dict(r)) for r in rows]

    async def disable_client(self, client_id: str) -> None:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(clients).where(clients.c.client_id == client_id).values(disabled=True)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no client {client_id}")

    async def client_token(self, client_id: str, secret: str, scope: str | None) -> IssuedTokens:
        async with self.sessions() as session:
            row = (await session.execute(select(clients).where(clients.c.client_id == client_id))).first()
        if row is None or row.disabled or not hmac.compare_digest(row.secret_hash, digest(secret)):
            exc = Unauthorized("invalid client")
            exc.headers = {"WWW-Authenticate": 'Basic realm="crm", error="invalid_client"'}
            raise exc
        allowed = set(row.scopes) if row.scopes is not None else None
        requested = set(scope.split()) if scope else None
        if requested is not None:
            if allowed is not None and not requested <= allowed:
                raise InvalidInput("scope", "more than this client may ask for")
            allowed = requested
        principal = Principal(
            sub=row.client_id,
            kind="client",
            roles=frozenset(row.roles),
            scopes=frozenset(allowed) if allowed is not None else None,
        )
        access, ttl = self.issue(principal)
        return IssuedTokens(access, ttl, scope=" ".join(sorted(allowed)) if allowed is not None else None)

    # --- API keys -----------------------------------------------------------------------------------

    async def create_api_key(
        self,
        name: str,
        roles: list[str],
        scopes: list[str] | None = None,
        expires_at: datetime | None = None,
        created_by: str | None = None,
    ) -> dict[str, Any]:
        policy.valid_roles(roles)
        _check_scopes(scopes)
        if policy.Role.MEMBER in roles:
            raise InvalidInput("body.roles", "an API key cannot be a member")
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("body.expires_at", "must be in the future")
        key_id = uuid.uuid4().hex[:16]
        secret = secrets.token_urlsafe(32)
        row = {
            "id": key_id,
            "secret_hash": digest(secret),
            "name": name,
            "roles": sorted(set(roles)),
            "scopes": sorted(set(scopes)) if scopes is not None else None,
            "created_by": created_by,
            "created_at": now(),
            "expires_at": expires_at,
        }
        async with self.sessions() as session, session.begin():
            await session.execute(api_keys.insert().values(**row))
        return {**_key_out(row), "key": f"{API_KEY_PREFIX}{key_id}.{secret}"}

    async def list_api_keys(self) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(api_keys).order_by(api_keys.c.created_at))).mappings().all()
        return [_key_out(dict(r)) for r in rows]

    async def revoke_api_key(self, key_id: str) -> None:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no active API key {key_id}")

    async def touch_api_key(self, key_id: str, when: datetime | None = None) -> None:
        """Record that a key was used (the gateway throttles this: at most once a minute per key)."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=when or now())
            )

    async def verify_api_key(self, presented: str) -> Principal | None:
        """The key's principal, or None when it is unknown, wrong, revoked or expired."""
        if not presented.startswith(API_KEY_PREFIX):
            return None
        key_id, _, secret = presented.removeprefix(API_KEY_PREFIX).partition(".")
        async with self.sessions() as session:
            row = (await session.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest(secret)):
            return None
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now()):
            return None
        return Principal(
            sub=row.id,
            kind="apikey",
            roles=frozenset(row.roles),
            scopes=frozenset(row.scopes) if row.scopes is not None else None,
        )


def _check_scopes(scopes: list[str] | None) -> None:
    if scopes is None:
        return
    known = {p.value for p in policy.Perm}
    for i, scope in enumerate(scopes):
        if scope not in known:
            raise InvalidInput(f"body.scopes.{i}", f"unknown permission {scope!r}")


def _member_principal(row: Any) -> Principal:
    return Principal(
        sub=row.id, kind="member", roles=frozenset({policy.Role.MEMBER}), customer_id=row.customer_id
    )


def _user_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": row["username"],
        "roles": list(row["roles"]),
        "branch": row.get("branch"),
        "disabled": bool(row.get("disabled")),
        "created_at": row["created_at"],
        "last_login_at": row.get("last_login_at"),
    }


def _member_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "customer_id": row["customer_id"],
        "disabled": bool(row.get("disabled")),
        "created_at": row["created_at"],
        "last_login_at": row.get("last_login_at"),
    }


def _client_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": row["client_id"],
        "name": row["name"],
        "roles": list(row["roles"]),
        "scopes": row.get("scopes"),
        "disabled": bool(row.get("disabled")),
        "created_at": row["created_at"],
    }


def _key_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "roles": list(row["roles"]),
        "scopes": row.get("scopes"),
        "created_by": row.get("created_by"),
        "created_at": row["created_at"],
        "expires_at": row.get("expires_at"),
        "revoked_at": row.get("revoked_at"),
        "last_used_at": row.get("last_used_at"),
    }

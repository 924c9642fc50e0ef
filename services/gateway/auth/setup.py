"""Wiring authentication into the gateway: the store, the key set, API keys, branch limits, the audit
log, the first admin user and the signing-key maintenance loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request

from services.gateway.auth.audit import AuditMiddleware, AuditWriter
from services.gateway.auth.store import API_KEY_PREFIX, AuthStore
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstream
from shared.auth.guard import AuthContext, bearer_token
from shared.auth.keys import LocalKeySet
from shared.auth.policy import Owner, values_at
from shared.auth.setup import verifier_for, warn_if_disabled
from shared.auth.tokens import Principal
from shared.db import create_engine
from shared.errors import Forbidden, Unauthorized
from shared.logging import get_logger

log = get_logger(__name__)


class GatewayAuth:
    """Everything authentication needs in the gateway, started and stopped with it."""

    def __init__(self, app: FastAPI, settings: GatewaySettings, database_url: str, keys: LocalKeySet) -> None:
        self.app = app
        self.settings = settings
        self.database_url = database_url
        self.engine = create_engine(database_url, pool_size=settings.db_pool_size)
        self.keys = keys
        self.store = AuthStore(settings, self.engine, keys)
        self.audit = AuditWriter(self.engine, flush_interval=settings.audit_flush_interval)
        self.api_key_cache: dict[str, tuple[Principal, float]] = {}
        self.branch_cache: dict[str, tuple[str | None, float]] = {}
        self.member_cache: dict[tuple[str, str], tuple[str | None, float]] = {}
        self.object_cache: dict[tuple[str, str], tuple[tuple[str, ...] | None, float]] = {}
        self.api_key_touched: dict[str, float] = {}
        self.api_key_touch_seconds = API_KEY_TOUCH_SECONDS
        self._maintenance: asyncio.Task[None] | None = None
        app.state.gateway_auth = self
        app.state.auth_store = self.store
        app.state.audit = self.audit
        app.state.api_key_cache = self.api_key_cache
        app.state.auth = AuthContext(
            service="gateway",
            enabled=True,
            verifier=verifier_for(settings, keys),
            authenticate=self.authenticate_api_key,
            customer_guard=self.branch_guard,
            member_guard=self.member_branch_guard,
            object_guard=self.object_branch_guard,
        )
        app.add_middleware(AuditMiddleware, writer=self.audit)

    async def start(self) -> None:
        await self.store.load_keys()
        await self.bootstrap_admin()
        self.audit.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="signing-key-maintenance")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.audit.stop()
        await self.engine.dispose()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.auth_key_check_interval_seconds)
            try:
                await self.store.maintain_keys()
            except Exception as exc:
                log.error("signing_key_maintenance_failed", error=repr(exc))

    async def bootstrap_admin(self) -> None:
        """First start with no users: an `admin` user, its password from `CRM_ADMIN_PASSWORD` or made
        up and printed once."""
        if await self.store.count_users() > 0:
            return
        given = self.settings.admin_password.get_secret_value()
        password = given or secrets.token_urlsafe(15)
        try:
            await self.store.create_user("admin", password, ["admin"])
        except Exception as exc:  # another replica won the race
            log.info("admin_bootstrap_skipped", reason=repr(exc))
            return
        if given:
            log.warning("admin_user_created", username="admin", password_from="CRM_ADMIN_PASSWORD")
        else:
            banner = (
                "\n" + "=" * 72 + "\n"
                "  First start: created user 'admin' with password\n\n"
                f"      {password}\n\n"
                "  It is shown only this once. Get a token:\n"
                "    curl -d grant_type=password -d username=admin -d password=... "
                "http://<gateway>/auth/token   (sign in to the console at /console/)\n" + "=" * 72 + "\n"
            )
            print(banner, file=sys.stderr, flush=True)
            log.warning("admin_user_created", username="admin", password_from="generated (printed once)")

    # --- API keys: X-API-Key (or a bearer starting with crm_) -> a short-lived JWT for its principal ---

    async def authenticate_api_key(self, request: Request) -> Principal | None:
        presented = request.headers.get("x-api-key")
        if presented is None:
            bearer = bearer_token(request)
            if bearer is None or not bearer.startswith(API_KEY_PREFIX):
                return None
            presented = bearer
        key = hashlib.sha256(presented.encode()).hexdigest()
        cached = self.api_key_cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            await self._touch_api_key(cached[0].sub, now)
            return cached[0]
        principal = await self.store.verify_api_key(presented)
        if principal is None:
            self.api_key_cache.pop(key, None)
            exc = Unauthorized("invalid, expired or revoked API key")
            exc.headers = {"WWW-Authenticate": 'Bearer realm="crm", error="invalid_token"'}
            raise exc
        token, ttl = self.store.issue(principal, ttl_seconds=self.settings.auth_apikey_token_ttl_seconds)
        minted = Principal(
            sub=principal.sub,
            kind=principal.kind,
            roles=principal.roles,
            scopes=principal.scopes,
            token=token,
        )
        if len(self.api_key_cache) > 10_000:
            self.api_key_cache.clear()
        self.api_key_cache[key] = (minted, now + min(self.settings.auth_apikey_cache_seconds, ttl / 2))
        await self._touch_api_key(minted.sub, now)
        return minted

    async def _touch_api_key(self, key_id: str, now: float) -> None:
        """`last_used_at`, written at most once per `api_key_touch_seconds` per key and gateway process
        (not a database write per request); a failed write never fails the request."""
        last = self.api_key_touched.get(key_id)
        if last is not None and now - last < self.api_key_touch_seconds:
            return
        if len(self.api_key_touched) > 10_000:
            self.api_key_touched.clear()
        self.api_key_touched[key_id] = now
        try:
            await self.store.touch_api_key(key_id)
        except Exception as exc:
            log.warning("api_key_touch_failed", key_id=key_id, error=repr(exc))

    # --- branch limits: staff with a `branch` claim see only that branch's customers ---------------

    async def branch_guard(self, principal: Principal, customer_id: str) -> None:
        branch = await self._branch_of(customer_id)
        if branch is _UNKNOWN:
            return  # no such customer: the route answers 404 itself
        if branch != principal.branch:
            raise Forbidden("this customer belongs to another branch")

    async def member_branch_guard(
        self, principal: Principal, member_id: str, params: Mapping[str, Any]
    ) -> None:
        """Routes keyed by a loyalty member id: the member's customer must be of the caller's branch.
        Fails closed: a member that cannot be resolved (unknown, another program, loyalty down) is a 403
        for branch-limited staff, never a pass (some routes do not check the program themselves)."""
        customer_id = await self._customer_of_member(str(params.get("program_id", "")), member_id)
        if customer_id is None:
            raise Forbidden("this member's branch cannot be checked (no such member in this program?)")
        await self.branch_guard(principal, customer_id)

    async def object_branch_guard(
        self, principal: Principal, owner: Owner, params: Mapping[str, Any]
    ) -> None:
        """Routes keyed by another object of customers (`policy.OWNERS`: a complaint, a transaction, a
        household...): every customer it belongs to must be of the caller's branch. Fails closed: an
        object whose customers cannot be found (unknown, the owning service down) is a 403."""
        customers = await self._customers_of(owner, params)
        if not customers:
            raise Forbidden("this object's branch cannot be checked (no such object?)")
        for customer_id in customers:
            branch = await self._branch_of(customer_id)
            if branch is _UNKNOWN or branch != principal.branch:
                raise Forbidden("this object belongs to a customer of another branch")

    async def _customers_of(self, owner: Owner, params: Mapping[str, Any]) -> tuple[str, ...] | None:
        try:
            path = _PATH_PARAM.sub(lambda m: quote(str(params[m.group(1)]), safe=""), owner.lookup)
        except KeyError:
            return None
        key = (owner.service, path)
        now = time.monotonic()
        cached = self.object_cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        if owner.service == "gateway":  # its own objects: member logins
            found_here = await self.store.customer_of_member_login(str(params.get("credential_id", "")))
            return (found_here,) if found_here else None
        upstream: Upstream | None = self.app.state.upstreams.get(owner.service)
        if upstream is None:
            return None
        try:
            response = await upstream.request(
                "GET", path, headers={"authorization": f"Bearer {self.store.service_token()}"}
            )
        except Exception as exc:  # the owning service is down: fail closed, do not cache
            log.warning("object_owner_lookup_failed", service=owner.service, path=path, error=repr(exc))
            return None
        if response.status_code != 200:
            return None
        document = response.json()
        found: list[str] = [str(v) for field in owner.customers for v in values_at(document, field) if v]
        program_id = str(document.get("program_id") or "") if isinstance(document, dict) else ""
        for field in owner.members:
            for member_id in values_at(document, field):
                customer_id = (
                    await self._customer_of_member(program_id, str(member_id)) if member_id else None
                )
                if customer_id is None:
                    return None  # a member that cannot be resolved: nothing to vouch for the object
                found.append(customer_id)
        customers = tuple(dict.fromkeys(found))
        if len(self.object_cache) > 100_000:
            self.object_cache.clear()
        # An object's customers change only on a merge (to the survivor): as short-lived as branches.
        self.object_cache[key] = (customers, now + self.settings.auth_branch_cache_seconds)
        return customers

    async def _customer_of_member(self, program_id: str, member_id: str) -> str | None:
        now = time.monotonic()
        cached = self.member_cache.get((program_id, member_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        if not program_id:
            return None
        upstream: Upstream | None = self.app.state.upstreams.get("loyalty")
        if upstream is None:
            return None
        response = await upstream.request(
            "GET",
            f"/programs/{quote(program_id, safe='')}/members/{quote(member_id, safe='')}",
            headers={"authorization": f"Bearer {self.store.service_token()}"},
        )
        if response.status_code != 200:
            return None
        customer_id = response.json().get("customer_id")
        if not isinstance(customer_id, str):
            return None
        if len(self.member_cache) > 100_000:
            self.member_cache.clear()
        # A member's customer changes only on a merge (to the survivor): as short-lived as branches.
        self.member_cache[(program_id, member_id)] = (
            customer_id,
            now + self.settings.auth_branch_cache_seconds,
        )
        return customer_id

    async def _branch_of(self, customer_id: str) -> Any:
        now = time.monotonic()
        cached = self.branch_cache.get(customer_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        upstream: Upstream = self.app.state.upstreams["identity"]
        response = await upstream.request(
            "GET",
            f"/customers/{quote(customer_id, safe='')}",  # ids from bodies and queries too: quoted
            headers={"authorization": f"Bearer {self.store.service_token()}"},
        )
        if response.status_code in (404, 410):
            return _UNKNOWN
        document = response.json() if response.status_code == 200 else None
        if not isinstance(document, dict):
            raise Forbidden("the customer's branch cannot be checked right now")
        branch = document.get("branch_id")
        if len(self.branch_cache) > 100_000:
            self.branch_cache.clear()
        self.branch_cache[customer_id] = (branch, now + self.settings.auth_branch_cache_seconds)
        return branch


_UNKNOWN: Any = object()
_PATH_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)}")
API_KEY_TOUCH_SECONDS = 60.0


def install(
    app: FastAPI, settings: GatewaySettings, *, embedded: bool, keys: LocalKeySet | None
) -> GatewayAuth | None:
    warn_if_disabled(settings, "gateway")
    if not settings.auth_enabled:
        app.state.auth = AuthContext(service="gateway", enabled=False)
        return None
    url = settings.gateway_database_url(embedded=embedded)
    assert url is not None
    return GatewayAuth(app, settings, url, keys or LocalKeySet())

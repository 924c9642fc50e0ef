"""Finding customers: by e-mail, phone, card, external id (exact, normalised) or by name (fuzzy)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from rapidfuzz import fuzz

from services.identity.matching import InvalidIdentifier, normalise_email, normalise_name, normalise_phone
from services.identity.models import CustomerRow
from services.identity.normalisation import query_search_keys
from services.identity.repository import CustomerRepository, IndexRepository
from shared.errors import InvalidInput
from shared.uow import UnitOfWork

MAX_FUZZY_CANDIDATES = 2000


@dataclass(frozen=True, slots=True)
class SearchQuery:
    q: str | None = None
    email: str | None = None
    phone: str | None = None
    card: str | None = None
    external_id: str | None = None  # "system:id"
    limit: int = 20
    cursor: str | None = None
    branch: str | None = None
    """Only customers of this branch (the caller is limited to it: `shared.auth.guard.ListBranch`)."""


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except ValueError as exc:
        raise InvalidInput("query.cursor", "not a cursor this API gave out") from exc


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _full_name(row: CustomerRow) -> str:
    return normalise_name(" ".join(p for p in (row.given_name, row.family_name, row.organisation_name) if p))


async def search(uow: UnitOfWork, query: SearchQuery) -> tuple[list[CustomerRow], str | None]:
    async with uow:
        index = IndexRepository(uow.session)
        customers = CustomerRepository(uow.session)
        wanted: list[tuple[str, str]] = []
        try:
            if query.email:
                wanted.append(("email", normalise_email(query.email)))
            if query.phone:
                wanted.append(("phone", normalise_phone(query.phone)))
        except InvalidIdentifier as exc:
            raise InvalidInput(f"query.{exc.field}", exc.reason) from exc
        if query.card:
            wanted.append(("card", "".join(ch for ch in query.card if ch.isalnum()).upper()))
        if query.external_id:
            system, sep, value = query.external_id.partition(":")
            if not sep or not system or not value:
                raise InvalidInput("query.external_id", "use system:id, e.g. shopify:7712")
            wanted.append((f"external:{system}", value))
        if not wanted and not query.q:
            raise InvalidInput("query", "give q, email, phone, card or external_id")

        ids: list[str] | None = None
        for kind, value in wanted:
            found = set(await index.customers_with(kind, value))
            ids = list(found) if ids is None else [i for i in ids if i in found]
        offset = _offset(query.cursor)
        if query.q:
            keys = query_search_keys(query.q)
            if not keys:
                raise InvalidInput("query.q", "give at least two letters")
            hits = await index.search(keys, limit=MAX_FUZZY_CANDIDATES, branch=query.branch)
            candidates = [cid for cid, _ in hits]
            if ids is not None:
                allowed = set(ids)
                candidates = [c for c in candidates if c in allowed]
            rows = [
                r
                for r in await customers.many(candidates, branch=query.branch)
                if r.erased_at is None and r.merged_into is None
            ]
            target = normalise_name(query.q)
            ranked = sorted(
                rows, key=lambda r: (-fuzz.token_set_ratio(target, _full_name(r)), r.created_at, r.id)
            )
            ranked = [r for r in ranked if fuzz.token_set_ratio(target, _full_name(r)) >= 60]
        else:
            roots: dict[str, CustomerRow] = {}
            for cid in ids or []:
                root = await customers.resolve(cid)
                if root is None or root.erased_at is not None:
                    continue
                if query.branch is None or root.branch_id == query.branch:
                    roots[root.id] = root
            ranked = sorted(roots.values(), key=lambda r: (r.created_at, r.id))
    page = ranked[offset : offset + query.limit]
    more = offset + query.limit < len(ranked)
    return page, (_cursor(offset + query.limit) if more else None)

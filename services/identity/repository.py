"""Every query identity makes lives here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, func, literal, select, text, tuple_, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import (
    BlockingKeyRow,
    CustomerRow,
    IdentifierRow,
    MatchModelRow,
    MatchReviewRow,
    MergeRow,
    ProfileChangeRow,
    SearchKeyRow,
    SourceRecordRow,
)

MAX_CHAIN = 64


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


# A source record's row and the index rows derived from it, by the column naming the record.
_DERIVED = (
    (_table(SourceRecordRow), "id"),
    (_table(IdentifierRow), "source_record_id"),
    (_table(BlockingKeyRow), "source_record_id"),
    (_table(SearchKeyRow), "source_record_id"),
)  # merges chained deeper than this mean corrupted data, not a real history


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: str, *, for_update: bool = False) -> CustomerRow | None:
        return await self.session.get(CustomerRow, customer_id, with_for_update=for_update or None)

    def add(self, row: CustomerRow) -> None:
        self.session.add(row)

    async def resolve(self, customer_id: str) -> CustomerRow | None:
        """The golden record an id stands for today, following merges."""
        row = await self.get(customer_id)
        for _ in range(MAX_CHAIN):
            if row is None or row.merged_into is None:
                return row
            row = await self.get(row.merged_into)
        raise RuntimeError(f"merge chain of {customer_id} is too long")

    async def member_ids(self, root_id: str) -> list[str]:
        """The golden record's id and every id merged into it, directly or through others."""
        members = [root_id]
        frontier = [root_id]
        while frontier:
            children = list(
                await self.session.scalars(
                    select(CustomerRow.id).where(CustomerRow.merged_into.in_(frontier))
                )
            )
            members.extend(children)
            frontier = children
            if len(members) > 10_000:
                raise RuntimeError(f"customer {root_id} has implausibly many merged ids")
        return members

    async def many(self, ids: Iterable[str], *, branch: str | None = None) -> list[CustomerRow]:
        """The customers with these ids (only those of `branch`, when given: a branch-limited caller)."""
        ids = list(ids)
        if not ids:
            return []
        query = select(CustomerRow).where(CustomerRow.id.in_(ids))
        if branch is not None:
            query = query.where(CustomerRow.branch_id == branch)
        return list(await self.session.scalars(query))


class SourceRecordRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_source(self, source_system: str, source_id: str) -> SourceRecordRow | None:
        return await self.session.scalar(
            select(SourceRecordRow).where(
                SourceRecordRow.source_system == source_system, SourceRecordRow.source_id == source_id
            )
        )

    async def of_customer(self, customer_id: str) -> list[SourceRecordRow]:
        return list(
            await self.session.scalars(
                select(SourceRecordRow)
                .where(SourceRecordRow.customer_id == customer_id)
                .order_by(SourceRecordRow.received_at)
            )
        )

    async def of_customers(self, customer_ids: Sequence[str], *, limit: int) -> list[SourceRecordRow]:
        if not customer_ids:
            return []
        return list(
            await self.session.scalars(
                select(SourceRecordRow).where(SourceRecordRow.customer_id.in_(customer_ids)).limit(limit)
            )
        )

    async def count_of_customer(self, customer_id: str) -> int:
        return int(
            await self.session.scalar(select(func.count()).where(SourceRecordRow.customer_id == customer_id))
            or 0
        )

    def add(self, row: SourceRecordRow) -> None:
        self.session.add(row)

    async def move(
        self, *, from_customer: str, to_customer: str, origins: Sequence[str] | None = None
    ) -> list[str]:
        """Re-home source records (and the indexes derived from them); returns the moved record ids."""
        query = select(SourceRecordRow.id).where(SourceRecordRow.customer_id == from_customer)
        if origins is not None:
            query = query.where(SourceRecordRow.origin_customer_id.in_(origins))
        ids = list(await self.session.scalars(query))
        if ids:
            for table, key in _DERIVED:
                await self.session.execute(
                    update(table).where(table.c[key].in_(ids)).values(customer_id=to_customer)
                )
        return ids


class IndexRepository:
    """Identifiers, blocking keys and search keys derived from source records."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def replace(
        self,
        record: SourceRecordRow,
        identifiers: Iterable[tuple[str, str]],
        blocking: Iterable[str],
        search: Iterable[str],
        *,
        fresh: bool = False,
    ) -> None:
        """Write a record's index rows; `fresh` (a record never indexed) skips deleting old ones."""
        if not fresh:
            for model in (IdentifierRow, BlockingKeyRow, SearchKeyRow):
                await self.session.execute(delete(model).where(model.source_record_id == record.id))
        connection = await self.session.connection()
        if connection.dialect.name == "postgresql":
            # The same rows in the same order, in one statement instead of three.
            pairs = sorted(set(identifiers))
            await self.session.execute(
                _INSERT_INDEXES,
                {
                    "kinds": [kind for kind, _ in pairs],
                    "values": [value for _, value in pairs],
                    "blocking": sorted(set(blocking)),
                    "search": sorted(set(search)),
                    "customer_id": record.customer_id,
                    "record_id": record.id,
                },
            )
            return
        rows_i = [
            {"kind": kind, "value": value, "customer_id": record.customer_id, "source_record_id": record.id}
            for kind, value in sorted(set(identifiers))
        ]
        if rows_i:
            await self.session.execute(_table(IdentifierRow).insert(), rows_i)
        for table, keys in ((_table(BlockingKeyRow), blocking), (_table(SearchKeyRow), search)):
            rows = [
                {"key": key, "customer_id": record.customer_id, "source_record_id": record.id}
                for key in sorted(set(keys))
            ]
            if rows:
                await self.session.execute(table.insert(), rows)

    async def customers_with(self, kind: str, value: str) -> list[str]:
        return list(
            await self.session.scalars(
                select(IdentifierRow.customer_id)
                .where(IdentifierRow.kind == kind, IdentifierRow.value == value)
                .distinct()
            )
        )

    async def customers_with_any(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        out: dict[tuple[str, str], set[str]] = {}
        for kind, value in pairs:
            out[(kind, value)] = set(await self.customers_with(kind, value))
        return out

    async def owner_counts(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """How many customers hold each (kind, value) identifier, in one query."""
        if not pairs:
            return {}
        rows = await self.session.execute(
            select(
                IdentifierRow.kind, IdentifierRow.value, func.count(func.distinct(IdentifierRow.customer_id))
            )
            .where(tuple_(IdentifierRow.kind, IdentifierRow.value).in_(list(pairs)))
            .group_by(IdentifierRow.kind, IdentifierRow.value)
        )
        counts = {(kind, value): int(n) for kind, value, n in rows}
        return {pair: counts.get(pair, 0) for pair in pairs}

    async def candidate_records(
        self, keys: Sequence[str], *, customers: int, limit: int
    ) -> list[SourceRecordRow]:
        """The source records of customers sharing a blocking key, in one query."""
        if not keys:
            return []
        candidates = (
            select(BlockingKeyRow.customer_id).where(BlockingKeyRow.key.in_(keys)).distinct().limit(customers)
        ).subquery()
        return list(
            await self.session.scalars(
                select(SourceRecordRow)
                .where(SourceRecordRow.customer_id.in_(select(candidates.c.customer_id)))
                .limit(limit)
            )
        )

    async def candidate_matches(
        self, keys: Sequence[str], *, cap: int, customers: int, limit: int
    ) -> list[tuple[str, str, str]]:
        """(record id, customer id, `match` as JSON text) of the source records (at most `limit`) of
        the customers (at most `customers`, the first by id) sharing a usable blocking key: one of
        `keys` holding at most `cap` rows.

        On PostgreSQL this is ONE statement: each key's size is counted on the primary-key index,
        reading at most cap + 1 entries of it (a common surname costs no more than a rare one), and
        only the keys small enough are read for their customers. Elsewhere: `block_sizes`, then
        `candidate_records`' two steps. `match` stays text: the caller decodes only records it has
        not seen before."""
        if not keys:
            return []
        connection = await self.session.connection()
        if connection.dialect.name == "postgresql":
            rows = await self.session.execute(
                _CANDIDATE_MATCHES,
                {"keys": list(keys), "n": cap + 1, "cap": cap, "customers": customers, "limit": limit},
            )
            return [(record_id, customer_id, match) for record_id, customer_id, match in rows]
        sizes = await self.block_sizes(keys, cap=cap)
        usable = [k for k in keys if sizes.get(k, 0) <= cap]
        if not usable:
            return []
        candidates = (
            select(BlockingKeyRow.customer_id)
            .where(BlockingKeyRow.key.in_(usable))
            .distinct()
            .order_by(BlockingKeyRow.customer_id)  # SQLite compares bytes, as COLLATE "C"
            .limit(customers)
        ).subquery()
        records = _table(SourceRecordRow)
        rows = await self.session.execute(
            select(records.c.id, records.c.customer_id, sql_cast(records.c.match, String))
            .where(records.c.customer_id.in_(select(candidates.c.customer_id)))
            .limit(limit)
        )
        return [(record_id, customer_id, match) for record_id, customer_id, match in rows]

    async def block_sizes(self, keys: Sequence[str], *, cap: int | None = None) -> dict[str, int]:
        """Rows per blocking key. With `cap`, counting stops at cap + 1: a popular key (a common
        surname, thousands of rows) costs no more to recognise as too big than a small one."""
        if not keys:
            return {}
        if cap is None:
            rows = await self.session.execute(
                select(BlockingKeyRow.key, func.count())
                .where(BlockingKeyRow.key.in_(keys))
                .group_by(BlockingKeyRow.key)
            )
            return {key: int(n) for key, n in rows}
        key_column = BlockingKeyRow.key
        first_rows = (select(key_column).where(key_column == key).limit(cap + 1) for key in keys)
        counts = [select(func.count()).select_from(rows.subquery()).scalar_subquery() for rows in first_rows]
        row = (await self.session.execute(select(*counts))).one()
        return {key: int(n) for key, n in zip(keys, row, strict=True) if n}

    async def candidates(self, keys: Sequence[str], *, limit: int) -> list[str]:
        if not keys:
            return []
        return list(
            await self.session.scalars(
                select(BlockingKeyRow.customer_id).where(BlockingKeyRow.key.in_(keys)).distinct().limit(limit)
            )
        )

    async def search(
        self, keys: Sequence[str], *, limit: int, branch: str | None = None
    ) -> list[tuple[str, int]]:
        """Customers sharing search keys, with how many keys they share (best first); only customers
        of `branch` when given (a branch-limited caller: the limit applies within the branch)."""
        if not keys:
            return []
        query = select(
            SearchKeyRow.customer_id, func.count(func.distinct(SearchKeyRow.key)).label("hits")
        ).where(SearchKeyRow.key.in_(keys))
        if branch is not None:
            query = query.where(
                SearchKeyRow.customer_id.in_(select(CustomerRow.id).where(CustomerRow.branch_id == branch))
            )
        rows = await self.session.execute(
            query.group_by(SearchKeyRow.customer_id)
            .order_by(func.count(func.distinct(SearchKeyRow.key)).desc())
            .limit(limit)
        )
        return [(cid, int(hits)) for cid, hits in rows]

    async def delete_for_records(self, record_ids: Sequence[str]) -> None:
        for table in (IdentifierRow, BlockingKeyRow, SearchKeyRow):
            await self.session.execute(delete(table).where(table.source_record_id.in_(record_ids)))


# `IndexRepository.replace` on PostgreSQL: a record's identifiers, blocking and search keys.
_INSERT_INDEXES = text(
    """
    WITH i AS (
        INSERT INTO identifiers (kind, value, customer_id, source_record_id)
        SELECT t.kind, t.value, :customer_id, :record_id
        FROM unnest(:kinds, :values) WITH ORDINALITY AS t(kind, value, n)
        ORDER BY t.n
    ), b AS (
        INSERT INTO blocking_keys (key, source_record_id, customer_id)
        SELECT t.key, :record_id, :customer_id FROM unnest(:blocking) AS t(key)
    )
    INSERT INTO search_keys (key, source_record_id, customer_id)
    SELECT t.key, :record_id, :customer_id FROM unnest(:search) AS t(key)
    """
).bindparams(
    bindparam("kinds", type_=ARRAY(String)),
    bindparam("values", type_=ARRAY(String)),
    bindparam("blocking", type_=ARRAY(String)),
    bindparam("search", type_=ARRAY(String)),
    bindparam("customer_id", type_=String),
    bindparam("record_id", type_=String),
)

# `candidate_matches` on PostgreSQL: usable keys (at most :cap rows, counted index-only up to
# :n = cap + 1), their first :customers customers by id, and those customers' source records.
_CANDIDATE_MATCHES = text(
    """
    SELECT r.id, r.customer_id, CAST(r.match AS TEXT)
    FROM source_records AS r
    WHERE r.customer_id IN (
        SELECT d.customer_id FROM (
            SELECT DISTINCT b.customer_id
            FROM blocking_keys AS b
            WHERE b.key = ANY(ARRAY(
                SELECT k.key FROM unnest(:keys) AS k(key)
                WHERE (SELECT count(*) FROM (
                    SELECT 1 FROM blocking_keys AS c WHERE c.key = k.key LIMIT :n
                ) AS s) <= :cap
            ))
        ) AS d
        ORDER BY d.customer_id COLLATE "C"  -- ids in code-point order, as Python sorts them
        LIMIT :customers
    )
    LIMIT :limit
    """
).bindparams(bindparam("keys", type_=ARRAY(String)))


class LineageRepository:
    """Merges, reviews, the audit trail and the match model."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: Any) -> None:
        self.session.add(row)

    async def merge(self, merge_id: str) -> MergeRow | None:
        return await self.session.get(MergeRow, merge_id, with_for_update=True)

    async def merges_of(self, customer_ids: Sequence[str]) -> list[MergeRow]:
        return list(
            await self.session.scalars(
                select(MergeRow)
                .where(MergeRow.survivor_id.in_(customer_ids) | MergeRow.absorbed_id.in_(customer_ids))
                .order_by(MergeRow.created_at)
            )
        )

    async def review(self, review_id: str) -> MatchReviewRow | None:
        return await self.session.get(MatchReviewRow, review_id, with_for_update=True)

    async def reviews(
        self, *, status: str | None, limit: int, offset: int, branch: str | None = None
    ) -> list[MatchReviewRow]:
        """The review queue; with `branch` (a branch-limited caller) only reviews whose two customers
        both belong to it."""
        query = select(MatchReviewRow).order_by(MatchReviewRow.probability.desc(), MatchReviewRow.created_at)
        if status is not None:
            query = query.where(MatchReviewRow.status == status)
        if branch is not None:
            of_branch = select(CustomerRow.id).where(CustomerRow.branch_id == branch)
            query = query.where(
                MatchReviewRow.customer_id.in_(of_branch), MatchReviewRow.candidate_id.in_(of_branch)
            )
        return list(await self.session.scalars(query.limit(limit).offset(offset)))

    async def pending_between(self, a: str, b: str) -> list[MatchReviewRow]:
        return list(
            await self.session.scalars(
                select(MatchReviewRow).where(
                    MatchReviewRow.status == "pending",
                    ((MatchReviewRow.customer_id == a) & (MatchReviewRow.candidate_id == b))
                    | ((MatchReviewRow.customer_id == b) & (MatchReviewRow.candidate_id == a)),
                )
            )
        )

    async def decided_reviews(self) -> list[MatchReviewRow]:
        return list(
            await self.session.scalars(
                select(MatchReviewRow).where(MatchReviewRow.status.in_(("merged", "kept_apart")))
            )
        )

    async def changes(self, customer_ids: Sequence[str], *, limit: int) -> list[ProfileChangeRow]:
        return list(
            await self.session.scalars(
                select(ProfileChangeRow)
                .where(ProfileChangeRow.customer_id.in_(customer_ids))
                .order_by(ProfileChangeRow.changed_at.desc(), ProfileChangeRow.id.desc())
                .limit(limit)
            )
        )

    async def active_model(self) -> MatchModelRow | None:
        return await self.session.scalar(
            select(MatchModelRow)
            .where(MatchModelRow.active.is_(True))
            .order_by(MatchModelRow.created_at.desc())
        )

    async def activate_model(self, row: MatchModelRow) -> None:
        await self.session.execute(update(MatchModelRow).values(active=False))
        row.active = True
        self.session.add(row)


async def golden_member_ids(session: AsyncSession, customer_id: str) -> list[str]:
    """The ids whose data belongs to this customer's golden record (for consents, notes, households):
    the survivor first, then the ids merged into it, nearest first. One statement (the merge chain up
    to the survivor and the tree down from it, recursively); a customer that does not exist answers
    `[customer_id]` (its data is simply empty), a chain longer than `MAX_CHAIN` is an error."""
    found = list(await session.execute(_golden_members(), {"id": customer_id}))
    if not found:
        repo = CustomerRepository(session)  # no such customer, or a chain too long: say which
        root = await repo.resolve(customer_id)
        return [customer_id] if root is None else await repo.member_ids(root.id)
    if len(found) > 10_000:
        raise RuntimeError(f"customer {customer_id} has implausibly many merged ids")
    return [row[0] for row in found]


_GOLDEN_MEMBERS: list[Any] = []


def _golden_members() -> Any:
    """`golden_member_ids`' statement, built once: `up` follows `merged_into` from the id to the
    survivor (at most `MAX_CHAIN` steps), `down` walks from the survivor to every id merged into it."""
    if not _GOLDEN_MEMBERS:
        c = cast(Table, CustomerRow.__table__).c
        up = (
            select(c.id, c.merged_into, literal(0).label("depth"))
            .where(c.id == bindparam("id"))
            .cte("up", recursive=True)
        )
        up = up.union_all(
            select(c.id, c.merged_into, up.c.depth + 1)
            .join(up, c.id == up.c.merged_into)
            .where(up.c.depth < MAX_CHAIN)
        )
        down = (
            select(up.c.id, literal(0).label("depth"))
            .where(up.c.merged_into.is_(None))
            .cte("down", recursive=True)
        )
        down = down.union_all(
            select(c.id, down.c.depth + 1).join(down, c.merged_into == down.c.id).where(down.c.depth < 10_000)
        )
        _GOLDEN_MEMBERS.append(select(down.c.id).order_by(down.c.depth, down.c.id))
    return _GOLDEN_MEMBERS[0]

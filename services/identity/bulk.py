"""Bulk resolution of source records: a file's records a chunk per transaction, decided as one by one.

`service.ingest` resolves one record per transaction with a dozen queries. An import (`batch.
import_records`) does the same work for a chunk of records (`chunk_size`, default 8,000) at a time:

1. every row is validated (`SourceRecordIn`, by the caller) and normalised (`normalise_fields`); a
   bad row becomes an error of the report, exactly as `import_records` always reported them;
2. a row whose (source system, source id) exists already, or came earlier in the same chunk, is an
   update: the chunk is cut there and the row goes through `service.ingest` (rare in imports);
3. for each run of new records, a few queries fetch everything their decisions can depend on: the
   owners of their identifiers (strong ones resolved through merges), the sizes of their blocking
   keys and the customers in the blocks small enough to use, and those customers' source records;
4. each record is then decided in memory, in file order, by `decide` (the rules of
   `service._decide`), against what the database held plus the run's earlier records (an
   in-memory index grows with every record, so two records of one person in one chunk meet as
   they would one by one);
5. golden records are assembled and audited record by record as `service.reassemble` would, and
   the whole run is written in ONE transaction with bulk statements (COPY on PostgreSQL): customers,
   source records, identifiers, blocking and search keys, reviews, profile changes and the outbox
   events (`CustomerRegistered` per new customer, `CustomerUpdated` per change, in record order).
   The source and index rows go as COPY text the worker process prepared with each record
   (`_CopyText`): the run only adds the customer id and the times.

On PostgreSQL the steps overlap: a run is written in the background while the next one is read and
decided, and the reads for the next chunk begin while this chunk's last run is decided. Reads see a
REPEATABLE READ snapshot, over which the runs it does not hold yet are replayed as decided, so the
decisions are those of strictly sequential processing (`BulkResolver._read`).

If the transaction fails on a uniqueness conflict (another writer stored one of the same source
records meanwhile), that run is resolved again one record at a time through `service.ingest`.

Where the result can differ from resolving one by one (`Stats` counts the first case):
- when more than `block_size_cap` × 4 records of the (at most `block_size_cap` × 2, both paths
  taking the first by id) candidate customers share a record's usable blocks, the one-by-one path
  scores the records its `LIMIT` happens to return; here the first in customer order;
- exact ties in probability between candidates may list reviews in another order (not whether a
  record joins a customer: that needs exactly one candidate above the threshold);
- records written by other processes while a run is being decided are not seen by that run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, TypeVar
from typing import cast as typing_cast

import asyncpg
import orjson
from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity import service
from services.identity.batch import IMPORT_WORKERS, Report
from services.identity.domain import SourceView, assemble, changed_fields
from services.identity.matching import MatchModel, MatchRecord, MatchResult, blocking_keys, score
from services.identity.matching.scoring import ScoreFloor, review_floor
from services.identity.models import (
    BlockingKeyRow,
    CustomerRow,
    IdentifierRow,
    MatchReviewRow,
    ProfileChangeRow,
    SearchKeyRow,
    SourceRecordRow,
)
from services.identity.normalisation import Normalised, match_record, normalise_fields, search_keys
from services.identity.repository import MAX_CHAIN
from services.identity.schemas import SourceRecordIn
from services.identity.settings import IdentitySettings
from shared import heap
from shared.contracts.identity import CustomerKind, CustomerRegistered, CustomerUpdated
from shared.db import copy_text
from shared.errors import DomainError
from shared.events.envelope import EventPayload, new_event
from shared.uow import UnitOfWork

T = TypeVar("T")
IN_BATCH = 2_000  # values per IN (...) list: far below asyncpg's and SQLite's bound-parameter limits
# Larger runs list each candidate customer's records once for more records (a 100,000-record import
# listed 930,000 candidate records in runs of 2,000, 365,000 in runs of 8,000: 15 % less CPU in all).
DEFAULT_CHUNK = 8_000
YIELD_EVERY = 50  # records decided between two turns of the event loop
# Worker processes run this much nicer than the process deciding: on a busy machine the decisions
# (the import's critical path) and the service's requests come first, and the workers, a chunk or two
# ahead, take the slack. (Alternated 100,000-record imports on two cores: 6 of 6 faster, +3 to +12 %.)
WORKER_NICENESS = 10


def _table(model: type[Any]) -> Table:
    return typing_cast(Table, model.__table__)


CUSTOMERS = _table(CustomerRow)
SOURCES = _table(SourceRecordRow)
IDENTIFIERS = _table(IdentifierRow)
BLOCKS = _table(BlockingKeyRow)
SEARCH = _table(SearchKeyRow)
REVIEWS = _table(MatchReviewRow)
CHANGES = _table(ProfileChangeRow)


def _as_text(column: Any) -> Any:
    """A JSON column read as its text, decoded by the caller (orjson: several times faster)."""
    return cast(column, Text).label(column.name)


def _batches(items: Sequence[T], size: int = IN_BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _chunk_sizes(n: int, size: int) -> list[int]:
    """The lengths of the chunks an import of `n` rows is cut into: `size`, but ramping up from
    `size / 8` at the start and down to it at the end, where nothing overlaps the work on a chunk
    (the first is prepared, the last written, with the other processes idle)."""
    if n <= size:
        return [n] if n else []
    ramp = [size // 8, size // 4, size // 2]
    if min(ramp) == 0 or n < 2 * (sum(ramp) + size):
        count = -(-n // size)
        return [n // count + (1 if i < n % count else 0) for i in range(count)]
    full, rest = divmod(n - 2 * sum(ramp), size)
    return ramp + [size] * full + ([rest] if rest else []) + ramp[::-1]


def _cut(items: Sequence[T], sizes: Sequence[int]) -> list[Sequence[T]]:
    out: list[Sequence[T]] = []
    start = 0
    for size in sizes:
        out.append(items[start : start + size])
        start += size
    return out


class _Db:
    """The statement shapes bulk resolution needs: fast on PostgreSQL (one `= ANY(array)` instead of
    long IN lists, COPY instead of INSERT), portable elsewhere (IN lists in batches, executemany)."""

    def __init__(self, session: AsyncSession, postgres: bool) -> None:
        self.session = session
        self.postgres = postgres
        self._begun = False

    async def driver(self) -> asyncpg.Connection:
        """The session's asyncpg connection, for the hot statements, inside the session's transaction.

        SQLAlchemy begins the transaction lazily, with the first statement it runs: a statement sent
        straight to asyncpg before that would run outside it (and a REPEATABLE READ snapshot would be
        taken only later). So one statement goes through SQLAlchemy first. One `_Db` per transaction."""
        connection = await self.session.connection()
        if not self._begun:
            await connection.exec_driver_sql("SELECT 1")
            self._begun = True
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        return typing_cast(asyncpg.Connection, raw)

    @classmethod
    async def of(cls, session: AsyncSession) -> _Db:
        connection = await session.connection()
        return cls(session, connection.dialect.name == "postgresql")

    async def select_in(self, query: Select[Any], column: Any, values: Collection[str]) -> list[Any]:
        """The rows of `query` where `column IN values`."""
        if not values:
            return []
        if self.postgres:
            condition = column == any_(literal(list(values), ARRAY(String)))
            return list((await self.session.execute(query.where(condition))).all())
        rows: list[Any] = []
        for batch in _batches(sorted(values)):
            rows.extend((await self.session.execute(query.where(column.in_(batch)))).all())
        return rows

    async def blocks(self, keys: Collection[str], cap: int) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Per key its row count, at least up to `cap + 1` (more makes no difference: such a block is
        never used), and the customer ids of the rows of each key with rows, at most `cap` of them."""
        if not keys:
            return {}, {}
        counts: dict[str, int] = {}
        members: dict[str, list[str]] = {}
        if self.postgres:
            # One index probe per key, reading at most cap + 1 rows of each, aggregated into one
            # array per key by the server (and decoded by asyncpg in C: no Python object per row).
            rows = await self.fetch(
                "SELECT k.key, b.ids FROM unnest($1::text[]) AS k(key) CROSS JOIN LATERAL "
                "(SELECT array_agg(customer_id) AS ids FROM (SELECT customer_id FROM blocking_keys "
                "WHERE blocking_keys.key = k.key LIMIT $2) AS l) AS b WHERE b.ids IS NOT NULL",
                list(keys),
                cap + 1,
            )
            for key, ids in rows:
                counts[key] = len(ids)
                if len(ids) <= cap:
                    members[key] = ids
            return counts, members
        sizes = await self.select_in(
            select(BLOCKS.c.key, func.count()).group_by(BLOCKS.c.key), BLOCKS.c.key, keys
        )
        counts = {key: int(n) for key, n in sizes}
        small = [k for k, n in counts.items() if n <= cap]
        for key, customer_id in await self.select_in(
            select(BLOCKS.c.key, BLOCKS.c.customer_id), BLOCKS.c.key, small
        ):
            members.setdefault(key, []).append(customer_id)
        return counts, members

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a PostgreSQL query run by asyncpg itself, in the session's transaction: for the
        hot reads, where SQLAlchemy's per-row result processing would cost more than the query."""
        return list(await (await self.driver()).fetch(sql, *args))

    async def source_records_of(self, customer_ids: Collection[str]) -> list[tuple[str, str, datetime]]:
        """(customer id, record id, updated_at) of those customers' source records, in the order
        `of_customer` reads a customer's: by received_at, then id."""
        if not customer_ids:
            return []
        if self.postgres:
            # Sorted by the server (and decoded by asyncpg in C); Records unpack like tuples.
            return await self.fetch(
                "SELECT customer_id, id, updated_at FROM source_records WHERE customer_id = ANY($1::text[]) "
                'ORDER BY received_at, id COLLATE "C"',
                list(customer_ids),
            )
        rows = await self.select_in(
            select(SOURCES.c.customer_id, SOURCES.c.id, SOURCES.c.updated_at, SOURCES.c.received_at),
            SOURCES.c.customer_id,
            customer_ids,
        )
        rows.sort(key=lambda r: (r[3], r[1]))
        return [(c, i, u) for c, i, u, _ in rows]

    async def update_customers(self, rows: list[dict[str, Any]]) -> None:
        """Set the golden columns (and provenance, updated_at, version) of customers by id: on
        PostgreSQL by COPY into a temporary table and one UPDATE … FROM (an UPDATE per row costs a
        round trip each), elsewhere by executemany."""
        if not rows:
            return
        columns = [name for name in rows[0] if name != "id"]
        if not self.postgres:
            statement = (
                update(CUSTOMERS)
                .where(CUSTOMERS.c.id == bindparam("_id"))
                .values({name: bindparam(f"_{name}") for name in columns})
            )
            await self.session.execute(statement, [{f"_{k}": v for k, v in row.items()} for row in rows])
            return
        # Dropped at commit: the columns match the customers table of the moment.
        listed = ", ".join(["id", *columns])
        await self.session.execute(
            text(
                f"CREATE TEMPORARY TABLE customers_bulk_update ON COMMIT DROP "
                f"AS SELECT {listed} FROM customers WITH NO DATA"
            )
        )
        await self.copy("customers_bulk_update", CUSTOMERS, rows)
        assignments = ", ".join(f"{name} = u.{name}" for name in columns)
        await self.session.execute(
            text(f"UPDATE customers AS c SET {assignments} FROM customers_bulk_update AS u WHERE c.id = u.id")
        )
        await self.session.execute(text("DROP TABLE customers_bulk_update"))

    async def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.postgres:
            await self.session.execute(table.insert(), rows)
            return
        await self.copy(table.name, table, rows)

    async def insert_tuples(self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert `rows`, tuples of plain values of `columns` in that order."""
        if not rows:
            return
        if not self.postgres:
            await self.session.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
            return
        await self._copy_records(table.name, rows, list(columns))

    async def _copy_records(self, target: str, records: Sequence[Sequence[Any]], columns: list[str]) -> None:
        raw = await self.driver()
        try:
            await raw.copy_records_to_table(target, records=records, columns=columns)
        except asyncpg.IntegrityConstraintViolationError as exc:
            # Bypassing SQLAlchemy bypasses its exception translation: the callers expect its kind.
            raise IntegrityError(f"COPY {target}", None, exc) from exc

    async def copy_text(self, target: str, columns: Sequence[str], lines: list[str]) -> None:
        """COPY `lines` (COPY text format, without their line ends) into the table named `target`."""
        if not lines:
            return
        raw = await self.driver()
        # Sent as one buffer (a memoryview: bytes would be taken for a path, a file read in a thread).
        data = memoryview(("\n".join(lines) + "\n").encode())
        try:
            await raw.copy_to_table(target, source=data, columns=list(columns), format="text")
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(f"COPY {target}", None, exc) from exc

    async def copy(self, target: str, table: Table, rows: list[dict[str, Any]]) -> None:
        """COPY `rows` (dicts keyed by `table`'s column names) into the table named `target`."""
        columns = list(rows[0])
        get = itemgetter(*columns)
        encoded = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
        records: list[Sequence[Any]] = []
        for row in rows:
            values = list(get(row))
            for i in encoded:
                values[i] = orjson.dumps(values[i]).decode()
            records.append(values)
        await self._copy_records(target, records, columns)


class _ValueRows:
    """A run's source and index rows as values: for SQLite, or rows prepared without COPY text."""

    def __init__(self) -> None:
        self.sources: list[dict[str, Any]] = []
        # Index rows as tuples in their table's column order (no dict per row: there are ~15 a record).
        self.identifiers: list[tuple[str, str, str, str]] = []  # kind, value, customer_id, source_record_id
        self.blocks: list[tuple[str, str, str]] = []  # key, customer_id, source_record_id
        self.search: list[tuple[str, str, str]] = []

    def add(self, row: _Row, customer_id: str, now: datetime, observed: datetime, trust: int) -> None:
        record_id = row.record_id
        self.sources.append(
            {
                "id": record_id,
                "customer_id": customer_id,
                "origin_customer_id": customer_id,
                "source_system": row.system,
                "source_id": row.source_id,
                "kind": row.kind,
                "data": row.stored,
                "match": row.match_values,
                "trust": trust,
                "verified": row.verified,
                "observed_at": observed,
                "received_at": now,
                "updated_at": now,
            }
        )
        self.identifiers.extend((k, v, customer_id, record_id) for k, v in row.identifiers)
        self.blocks.extend((key, customer_id, record_id) for key in sorted(row.keys))
        self.search.extend((key, customer_id, record_id) for key in row.search)

    async def write(self, db: _Db, stats: Stats) -> None:
        with stats.timed("write.source_records"):
            await db.insert(SOURCES, self.sources)
        for table, columns, tuples in (
            (IDENTIFIERS, ("kind", "value", "customer_id", "source_record_id"), self.identifiers),
            (BLOCKS, ("key", "customer_id", "source_record_id"), self.blocks),
            (SEARCH, ("key", "customer_id", "source_record_id"), self.search),
        ):
            with stats.timed(f"write.{table.name}"):
                await db.insert_tuples(table, columns, tuples)


class _TextRows:
    """A run's source and index rows as COPY text, from the text each record came with (`_CopyText`):
    a few string joins a record, where values cost a Python object per column and their encoding."""

    SOURCE_COLUMNS = (
        "customer_id", "origin_customer_id", "received_at", "updated_at", "observed_at", "trust",
        "id", "source_system", "source_id", "kind", "data", "match", "verified",
    )  # fmt: skip

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.identifiers: list[str] = []
        self.blocks: list[str] = []
        self.search: list[str] = []

    def add(self, row: _Row, customer_id: str, now: datetime, observed: datetime, trust: int) -> None:
        text = row.copy
        assert text is not None
        at = now.isoformat()
        self.sources.append(
            f"{customer_id}\t{customer_id}\t{at}\t{at}\t{text.observed or at}\t{trust}\t{text.source}"
        )
        between = "\n" + customer_id  # each line is the customer id and one of the record's
        for lines, parts in (
            (self.identifiers, text.identifiers),
            (self.blocks, text.blocks),
            (self.search, text.search),
        ):
            if parts:
                lines.append(customer_id + between.join(parts))

    async def write(self, db: _Db, stats: Stats) -> None:
        for table, columns, lines in (
            (SOURCES, self.SOURCE_COLUMNS, self.sources),
            (IDENTIFIERS, ("customer_id", "kind", "value", "source_record_id"), self.identifiers),
            (BLOCKS, ("customer_id", "key", "source_record_id"), self.blocks),
            (SEARCH, ("customer_id", "key", "source_record_id"), self.search),
        ):
            with stats.timed(f"write.{table.name}"):
                await db.copy_text(table.name, columns, lines)


# -- the decision, free of I/O --------------------------------------------------------------------


class Known(Protocol):
    """What the decision reads of the stored data (the database as of this record)."""

    def customers_with(self, kind: str, value: str) -> Collection[str]:
        """Distinct customer ids of the identifier rows holding (kind, value)."""

    def block_size(self, key: str) -> int:
        """How many blocking-key rows hold `key`."""

    def candidates(self, keys: Sequence[str], *, limit: int) -> list[str]:
        """Distinct customer ids in the blocks of `keys`, at most `limit`."""

    def records_of(
        self, customer_ids: Sequence[str], *, limit: int
    ) -> list[tuple[str, Sequence[MatchRecord]]]:
        """(customer id, matching views of its source records) of those customers in order, at
        most `limit` records in all (the last customer's cut short if need be)."""

    def live_root(self, customer_id: str) -> str | None:
        """The customer an id stands for today (merges followed), None if unknown or erased."""

    def record_count(self, customer_id: str) -> int: ...


@dataclass
class Decision:
    target: str | None = None  # the customer the record joins; None: a new customer
    reviews: list[tuple[str, MatchResult]] = field(default_factory=list)
    reason: str = ""
    best: MatchResult | None = None
    best_candidate: str | None = None


def decide(
    settings: IdentitySettings,
    model: MatchModel,
    incoming: MatchRecord,
    identifiers: Sequence[tuple[str, str]],
    known: Known,
    *,
    keys: Collection[str] | None = None,
) -> Decision:
    """`service._decide` without I/O: the same rules, in the same order, over `known`.

    `keys`: the incoming record's blocking keys, if already computed (used unless identifiers too
    common to count are dropped, which changes the keys)."""
    # Identifier values shared by many customers (a family's e-mail, a shop's phone) do not identify.
    shared = {(k, v): known.customers_with(k, v) for k, v in identifiers if k in ("email", "phone")}
    too_common = {
        kind for (kind, _), ids in shared.items() if len(ids) >= settings.max_customers_per_identifier
    }
    if too_common:
        incoming = service._without(incoming, too_common)
        keys = None

    strong = [(k, v) for k, v in identifiers if k in service.STRONG_KINDS or k.startswith("external:")]
    strong_owners: set[str] = set()
    for kind, value in strong:
        for owner in known.customers_with(kind, value):
            root = known.live_root(owner)
            if root is not None:
                strong_owners.add(root)

    # Below the review threshold a score changes nothing here, so only pairs that can reach it are
    # scored in full — and every candidate owning a strong identifier, whose evidence is weighed.
    scored = score_candidates(
        settings, model, incoming, known, keys=keys, floor=settings.review_threshold, keep=strong_owners
    )
    best_id, best = max(scored.items(), key=lambda kv: kv[1].probability) if scored else (None, None)
    decision = Decision(best=best, best_candidate=best_id)

    if len(strong_owners) == 1:
        (owner_id,) = strong_owners
        owner_score = scored.get(owner_id)
        if owner_score is None or not service._contradicts(owner_score):
            decision.target = owner_id
            decision.best_candidate = owner_id
            decision.best = owner_score
            return decision
        decision.reviews = [(owner_id, owner_score)]
        decision.reason = "strong identifier shared, but other fields disagree"
        return decision
    if len(strong_owners) > 1:
        decision.reviews = [(c, scored[c]) for c in strong_owners if c in scored][:5]
        decision.reason = "strong identifier shared by several customers"
        return decision

    if best is None or best_id is None:
        return decision
    above = [c for c, r in scored.items() if r.probability >= settings.auto_merge_threshold]
    if best.probability >= settings.auto_merge_threshold:
        size = known.record_count(best_id)
        if len(above) > 1:
            decision.reviews = [(c, scored[c]) for c in above[:5]]
            decision.reason = "matches several customers: they may be one"
        elif size >= settings.max_records_per_customer:
            decision.reviews = [(best_id, best)]
            decision.reason = f"customer already joins {size} records"
        else:
            decision.target = best_id
        return decision
    if best.probability >= settings.review_threshold:
        ranked = sorted(scored.items(), key=lambda kv: kv[1].probability, reverse=True)
        decision.reviews = [(c, r) for c, r in ranked if r.probability >= settings.review_threshold][:3]
        decision.reason = "probable match"
    return decision


def score_candidates(
    settings: IdentitySettings,
    model: MatchModel,
    incoming: MatchRecord,
    known: Known,
    *,
    keys: Collection[str] | None = None,
    floor: float | None = None,
    keep: Collection[str] = (),
) -> dict[str, MatchResult]:
    """`service._score_candidates` without I/O: the best score per candidate customer.

    With `floor` (a probability), a candidate none of whose records can reach it is left out
    (`ScoreFloor`), unless it is one of `keep`: the result holds the same candidates at or above
    `floor`, with the same scores, as without it.

    Source records always belong to a live golden record (they move on merge and go on erasure),
    so every candidate found is a customer that can be matched."""
    ordered = sorted(blocking_keys(incoming) if keys is None else keys)
    usable = [k for k in ordered if known.block_size(k) <= settings.block_size_cap]
    candidate_ids = known.candidates(usable, limit=settings.block_size_cap * 2)
    bounded = None if floor is None else ScoreFloor(incoming, model, review_floor(floor))
    best: dict[str, MatchResult] = {}
    for customer_id, others in known.records_of(candidate_ids, limit=settings.block_size_cap * 4):
        if bounded is None or customer_id in keep:
            results: Iterable[MatchResult | None] = (score(incoming, other, model) for other in others)
        else:
            results = map(bounded.reaches, others)
        for result in results:
            if result is None:
                continue
            current = best.get(customer_id)
            if current is None or result.probability > current.probability:
                best[customer_id] = result
    return best


# -- the in-memory view: the database as prefetched, plus the run's earlier records ----------------


@dataclass
class Stats:
    """What a resolver did: runs written, runs redone one by one after a conflict, time per phase, and
    how often a LIMIT of the one-by-one path (`block_size_cap` × 2 customers, × 4 records) bound:
    the only case where the two may differ (which candidates the database returns is arbitrary)."""

    candidate_limit_hits: int = 0
    record_limit_hits: int = 0
    record_views_cached: int = 0  # candidate source records whose matching view earlier runs had built
    record_views_loaded: int = 0
    goldens_cached: int = 0  # customers joined whose golden record earlier runs had assembled
    goldens_loaded: int = 0
    pairs_scored: int = 0
    replayed_runs: int = 0  # runs decided before the previous one was committed (its additions replayed)
    redecided: int = 0  # runs decided again because the previous one was redone one by one
    read_ahead: int = 0  # runs whose reads began while the run before was being decided
    runs: int = 0
    fallbacks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


class _Known:
    def __init__(self, cap: int, stats: Stats) -> None:
        self.cap = cap
        self.stats = stats
        self.block_count: dict[str, int] = {}
        # Customer ids per blocking-key row, only for blocks still small enough to be used.
        self.block_members: dict[str, list[str]] = {}
        self.owners: dict[tuple[str, str], set[str]] = {}
        self.records: dict[str, list[MatchRecord]] = {}
        # id -> (merged_into, erased)
        self.customers: dict[str, tuple[str | None, bool]] = {}

    def customers_with(self, kind: str, value: str) -> Collection[str]:
        return self.owners.get((kind, value), ())

    def block_size(self, key: str) -> int:
        return self.block_count.get(key, 0)

    def candidates(self, keys: Sequence[str], *, limit: int) -> list[str]:
        ids = list(dict.fromkeys(c for key in keys for c in self.block_members.get(key, ())))
        if len(ids) > limit:
            self.stats.candidate_limit_hits += 1
            ids = sorted(ids)[:limit]
        return ids

    def records_of(
        self, customer_ids: Sequence[str], *, limit: int
    ) -> list[tuple[str, Sequence[MatchRecord]]]:
        records = self.records
        out: list[tuple[str, Sequence[MatchRecord]]] = []
        total = 0
        for customer_id in customer_ids:
            views = records.get(customer_id)
            if not views:
                continue
            if total + len(views) > limit:
                self.stats.record_limit_hits += 1
                if limit > total:
                    out.append((customer_id, views[: limit - total]))
                total = limit
                break
            out.append((customer_id, views))
            total += len(views)
        self.stats.pairs_scored += total
        return out

    def live_root(self, customer_id: str) -> str | None:
        current = customer_id
        for _ in range(MAX_CHAIN):
            state = self.customers.get(current)
            if state is None:
                return None
            merged_into, erased = state
            if merged_into is None:
                return None if erased else current
            current = merged_into
        raise RuntimeError(f"merge chain of {customer_id} is too long")

    def record_count(self, customer_id: str) -> int:
        return len(self.records.get(customer_id, ()))

    def add(
        self,
        customer_id: str,
        record: MatchRecord,
        keys: Collection[str],
        identifiers: Collection[tuple[str, str]],
        *,
        new_customer: bool,
    ) -> None:
        """A record stored for `customer_id`: later records of the run see it."""
        if new_customer:
            self.customers[customer_id] = (None, False)
        self.records.setdefault(customer_id, []).append(record)
        for key in keys:
            size = self.block_count.get(key, 0) + 1
            self.block_count[key] = size
            members = self.block_members.get(key)
            if members is not None:
                if size > self.cap:
                    del self.block_members[key]  # too big to be used ever again
                else:
                    members.append(customer_id)
        for pair in identifiers:
            self.owners.setdefault(pair, set()).add(customer_id)


class _Cache:
    """What earlier runs of one resolver read or wrote, so later runs need not fetch and rebuild it.

    * matching views of source records, by record id, valid while the record's `updated_at` is the
      one cached (an update elsewhere changes it);
    * golden records as the resolver last wrote or loaded them, valid while the customer's `version`
      and the (id, updated_at) of its source records are the ones cached.

    Every entry is checked against the database inside the run's transaction (the customers locked)
    before it is used, so another writer's change is never missed; a run that fails empties it."""

    def __init__(self, max_records: int = 250_000, max_goldens: int = 100_000) -> None:
        self.max_records = max_records
        self.max_goldens = max_goldens
        self.records: dict[str, tuple[datetime, MatchRecord]] = {}
        self.goldens: dict[str, tuple[frozenset[tuple[str, datetime]], _Golden]] = {}

    def keep_records(self, entries: Sequence[tuple[str, datetime, MatchRecord]]) -> None:
        for record_id, updated_at, record in entries:
            self.records[record_id] = (updated_at, record)
        _trim(self.records, self.max_records)

    def golden(
        self, customer_id: str, version: int, sources: frozenset[tuple[str, datetime]]
    ) -> _Golden | None:
        entry = self.goldens.get(customer_id)
        if entry is None or entry[0] != sources or entry[1].version != version:
            return None
        cached = entry[1]
        return _Golden(
            id=cached.id,
            values=dict(cached.values),
            provenance=cached.provenance,
            version=cached.version,
            updated_at=cached.updated_at,
            views=list(cached.views),
            created=False,
        )

    def keep_goldens(
        self, goldens: Collection[_Golden], sources: dict[str, set[tuple[str, datetime]]]
    ) -> None:
        for golden in goldens:
            self.goldens[golden.id] = (frozenset(sources.get(golden.id, ())), golden)
        _trim(self.goldens, self.max_goldens)

    def clear(self) -> None:
        self.records.clear()
        self.goldens.clear()


def _trim(entries: dict[str, Any], limit: int) -> None:
    """Forget the oldest half of `entries` once it holds more than `limit`."""
    if len(entries) > limit:
        for key in list(itertools.islice(entries, len(entries) // 2)):
            del entries[key]


# -- one run of new records -----------------------------------------------------------------------


# (customer id, record, blocking keys, identifiers, whether the customer is new): one `_Known.add`.
_Added = tuple[str, MatchRecord, frozenset[str], list[tuple[str, str]], bool]


@dataclass
class _Pending:
    """A run being decided or written: not committed yet, so a read begun now may not see it."""

    probe: str  # one of its source record ids: visible in a snapshot iff the run is committed
    source_keys: set[tuple[str, str]]  # (source system, source id) of its records
    added: asyncio.Future[list[_Added]]  # its additions to `known`, once its decisions are final


@dataclass
class _InFlight:
    """A run decided and being written in the background."""

    task: asyncio.Task[bool]  # True once committed as decided; False if redone one by one
    run: _Pending


@dataclass
class _Ahead:
    """The reads for the next chunk's first run, begun while this chunk's last run is decided."""

    task: asyncio.Task[tuple[list[_Row], _Run] | None]  # that run's rows and its read `_Run`


class _CopyText(NamedTuple):
    """A record's rows in PostgreSQL COPY text form (`shared.db.copy_text`), all but the columns the
    decision sets: a line is the customer id, then one of these (see `_TextRows`)."""

    source: str  # id, source_system, source_id, kind, data, match, verified
    observed: str | None  # observed_at, if the source gave it (else the time of receipt)
    identifiers: tuple[str, ...]  # "\t" kind, value, source_record_id: one per identifier
    blocks: tuple[str, ...]  # "\t" key, source_record_id: one per blocking key
    search: tuple[str, ...]  # the same per search key


@dataclass
class _Row:
    """A valid row of the file, normalised, keyed and with everything the writing of it needs that
    does not depend on the decision: all prepared together (in a worker process, by `prepare_rows`).

    A row prepared in a worker is sent back without its validated record and normalised values
    (`shipped`): what the decision and the writing need of them is kept in plain fields, which cost a
    fraction to pickle and unpickle; `given()` validates the raw row again on the rare occasions the
    whole record is needed."""

    number: int
    data: SourceRecordIn | None  # the record as validated; None once shipped (see `given`)
    normal: Normalised | None  # its normalised values; None once shipped
    raw: dict[str, Any] | None = None  # the raw fields `data` was validated from, if shipped
    system: str = ""  # source system
    given_source_id: str | None = None  # the source's id of the record, if it gave one
    kind: CustomerKind = "person"
    status: str = ""
    observed_at: datetime | None = None
    match_values: dict[str, Any] = field(default_factory=dict)  # MatchRecord fields (JSON-ready)
    record_id: str = ""
    match: MatchRecord | None = None
    keys: frozenset[str] = frozenset()
    identifiers: list[tuple[str, str]] = field(default_factory=list)  # distinct, sorted
    stored: dict[str, Any] = field(default_factory=dict)  # the source record's `data`
    verified: list[str] = field(default_factory=list)  # distinct, sorted
    source_id: str = ""
    search: tuple[str, ...] = ()  # search keys, sorted
    new_id: str = ""  # the customer's id, if the record starts a new one
    event_id: str = ""  # its event's id (a record gives at most one)
    copy: _CopyText | None = None

    def prepare(self, copy: bool = False) -> None:
        """Fill in the derived fields; with `copy`, the COPY text of the rows too."""
        data, normal = self.data, self.normal
        assert data is not None
        assert normal is not None
        self.system = data.source_system
        self.given_source_id = data.source_id
        self.kind = data.kind
        self.status = data.status
        self.observed_at = data.observed_at
        self.match_values = normal.match
        self.record_id = str(uuid.uuid4())
        self.match = match_record(self.record_id, normal.match)
        self.keys = frozenset(blocking_keys(self.match))
        self.identifiers = sorted(set(normal.identifiers))
        stored = {**normal.display, "status": data.status}
        stored.pop("verified", None)
        stored.pop("observed_at", None)
        self.stored = stored
        self.verified = sorted(set(data.verified))
        self.source_id = data.source_id or str(uuid.uuid4())
        self.search = tuple(sorted(search_keys(normal.match)))
        self.new_id = str(uuid.uuid4())
        self.event_id = str(uuid.uuid4())
        if copy:
            self.copy = self._copy_text()

    def shipped(self) -> _Row:
        """This row without its validated record and normalised values: to be sent from a worker."""
        self.data = self.normal = None
        return self

    def given(self) -> SourceRecordIn:
        """The record as validated (again, from the raw row, if the row was shipped)."""
        if self.data is None:
            assert self.raw is not None, "a shipped row needs its raw fields back (`resolve_raw`)"
            self.data = SourceRecordIn.model_validate({**self.raw, "source_system": self.system})
        return self.data

    def _copy_text(self) -> _CopyText:
        data = self.data
        assert data is not None
        rid = self.record_id  # a uuid: nothing to escape
        source = "\t".join(
            (
                rid,
                copy_text(data.source_system),
                copy_text(self.source_id),
                copy_text(data.kind),
                copy_text(orjson.dumps(self.stored).decode()),
                copy_text(orjson.dumps(self.match_values).decode()),
                copy_text(orjson.dumps(self.verified).decode()),
            )
        )
        return _CopyText(
            source=source,
            observed=None if data.observed_at is None else data.observed_at.isoformat(),
            identifiers=tuple(f"\t{copy_text(k)}\t{copy_text(v)}\t{rid}" for k, v in self.identifiers),
            blocks=tuple(f"\t{copy_text(key)}\t{rid}" for key in sorted(self.keys)),
            search=tuple(f"\t{copy_text(key)}\t{rid}" for key in self.search),
        )


@dataclass
class _Golden:
    """A customer row as the run changes it (the columns `service.reassemble` sets)."""

    id: str
    values: dict[str, Any]
    provenance: dict[str, Any]
    version: int
    updated_at: datetime
    views: list[SourceView]
    created: bool
    dirty: bool = False
    row: dict[str, Any] = field(default_factory=dict)  # the new customer's other columns


class _Clock:
    """Strictly increasing timestamps, so that records keep their file order in `received_at`."""

    def __init__(self) -> None:
        self.last = datetime.min.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        now = datetime.now(UTC)
        if now <= self.last:
            now = self.last + timedelta(microseconds=1)
        self.last = now
        return now


def _snapshot(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in service.GOLDEN_COLUMNS:
        value: Any = values.get(name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def _reassemble(golden: _Golden) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """`service.reassemble` on the in-memory row: (before, after, changed golden columns)."""
    before = _snapshot(golden.values)
    result = assemble(golden.views)
    for name in service.GOLDEN_COLUMNS:
        value = result.values.get(name)
        if name == "birth_date" and isinstance(value, str):
            value = date.fromisoformat(value)
        if name in ("addresses",) and value is None:
            value = []
        if name in ("external_ids", "attributes") and value is None:
            value = {}
        if name in ("kind", "status") and value is None:
            continue
        golden.values[name] = value
    provenance_changed = result.provenance != golden.provenance
    golden.provenance = result.provenance
    after = _snapshot(golden.values)
    changed = changed_fields(before, after)
    if changed or provenance_changed:
        # The ORM writes an UPDATE (and bumps the version) whenever a column differs.
        golden.version += 1
        golden.dirty = True
    return before, after, changed


class _Run:
    """Resolves a run of new source records (no updates among them) in one transaction."""

    def __init__(
        self,
        uow: UnitOfWork,
        db: _Db,
        settings: IdentitySettings,
        model: MatchModel,
        rows: list[_Row],
        clock: _Clock,
        stats: Stats,
        cache: _Cache | None = None,
    ) -> None:
        self.cache = cache if cache is not None else _Cache()
        # What the decisions added to `known`, in order: a later run decided before this one is
        # committed replays it (`_Known.add` arguments).
        self.added: list[_Added] = []
        self.written_records: list[tuple[str, datetime, MatchRecord]] = []
        self.sources: dict[str, set[tuple[str, datetime]]] = {}  # customer id -> its (record id, updated_at)
        self.goldens: list[_Golden] = []
        self.uow = uow
        self.db = db
        self.settings = settings
        self.model = model
        self.rows = rows
        self.clock = clock
        self.known = _Known(settings.block_size_cap, stats)
        self.stats = stats
        self.outcomes: list[str] = []

    # 1. prefetch

    def bind(self, uow: UnitOfWork, db: _Db) -> None:
        """Write in another transaction than the one the run was decided in."""
        self.uow = uow
        self.db = db

    async def prefetch(self, replay: Sequence[_Added] = ()) -> None:
        """Read what the decisions need; then apply `replay`, the additions of an earlier run that
        is not committed yet (and so not in what was read), as its decisions made them."""
        await self._prefetch()
        await self.replay(replay)

    async def replay(self, replay: Sequence[_Added]) -> None:
        """Apply the additions of earlier runs the reads did not see (in the reads' snapshot)."""
        if not replay:
            return
        known = self.known
        joined = {customer_id for customer_id, *_, new in replay if not new}
        unread = sorted(joined - known.records.keys())
        pending = {c for c in joined if c not in known.customers}
        while pending:
            states = await self.db.select_in(
                select(CUSTOMERS.c.id, CUSTOMERS.c.merged_into, CUSTOMERS.c.erased_at),
                CUSTOMERS.c.id,
                pending,
            )
            for customer_id, merged_into, erased_at in states:
                known.customers[customer_id] = (merged_into, erased_at is not None)
            pending = {m for _, m, _ in states if m is not None and m not in known.customers}
        await self._load_records(unread)
        for customer_id, record, keys, identifiers, new in replay:
            known.add(customer_id, record, keys, identifiers, new_customer=new)

    async def _prefetch(self) -> None:
        db = self.db
        known = self.known
        cap = self.settings.block_size_cap
        by_kind: dict[str, set[str]] = {}
        keys: set[str] = set()
        for row in self.rows:
            for kind, value in row.identifiers:
                by_kind.setdefault(kind, set()).add(value)
            keys |= row.keys

        owner_ids: set[str] = set()  # strong identifiers' owners: resolved through merges
        with self.stats.timed("prefetch.identifiers"):
            for kind, values in by_kind.items():
                strong = kind in service.STRONG_KINDS or kind.startswith("external:")
                known.owners.update({(kind, v): set() for v in values})
                found = await db.select_in(
                    select(IDENTIFIERS.c.value, IDENTIFIERS.c.customer_id).where(IDENTIFIERS.c.kind == kind),
                    IDENTIFIERS.c.value,
                    values,
                )
                for value, customer_id in found:
                    known.owners[(kind, value)].add(customer_id)
                    if strong:
                        owner_ids.add(customer_id)

        with self.stats.timed("prefetch.blocks"):
            known.block_count, members = await db.blocks(keys, cap)
        # Keys still small enough to use (new keys have no rows yet, but may get some).
        known.block_members = {k: members.get(k, []) for k in keys if known.block_count.get(k, 0) <= cap}
        pending = owner_ids
        while pending:
            states = await db.select_in(
                select(CUSTOMERS.c.id, CUSTOMERS.c.merged_into, CUSTOMERS.c.erased_at),
                CUSTOMERS.c.id,
                pending,
            )
            for customer_id, merged_into, erased_at in states:
                known.customers[customer_id] = (merged_into, erased_at is not None)
            pending = {m for _, m, _ in states if m is not None and m not in known.customers}

        # Every customer a record of the run may join (a candidate, or a strong identifier's owner)
        # with all its source records: later records of the run may meet it through the new ones.
        targets = {customer_id for ids in members.values() for customer_id in ids}
        targets |= {root for owner in owner_ids if (root := known.live_root(owner)) is not None}
        with self.stats.timed("prefetch.records"):
            await self._load_records(targets)

    async def _load_records(self, customer_ids: Collection[str]) -> None:
        """The matching views of those customers' source records, oldest first, into `known`."""
        stored = await self.db.source_records_of(customer_ids)
        cached = self.cache.records.get
        views: dict[str, MatchRecord] = {}
        missing: list[str] = []
        for _, record_id, updated_at in stored:  # a cached view holds while its updated_at does
            entry = cached(record_id)
            if entry is not None and entry[0] == updated_at:
                views[record_id] = entry[1]
            else:
                missing.append(record_id)
        fetched = await self.db.select_in(
            select(SOURCES.c.id, SOURCES.c.updated_at, _as_text(SOURCES.c.match)), SOURCES.c.id, missing
        )
        loaded = [(rid, at, match_record(rid, orjson.loads(match))) for rid, at, match in fetched]
        self.cache.keep_records(loaded)
        views.update((rid, record) for rid, _, record in loaded)
        records = self.known.records
        for customer_id, record_id, _ in stored:
            view = views.get(record_id)
            if view is not None:  # None: erased between the two reads
                if (kept := records.get(customer_id)) is None:
                    records[customer_id] = [view]
                else:
                    kept.append(view)
        self.stats.record_views_cached += len(stored) - len(missing)
        self.stats.record_views_loaded += len(missing)

    # 2. decide, in file order

    async def decide_all(self) -> list[tuple[_Row, str, Decision]]:
        """Each record's decision; returns (row, its customer id, decision). Every `YIELD_EVERY`
        records the event loop gets a turn, so that the next run's reads (`BulkResolver._run`) go
        on while this one is decided."""
        decided: list[tuple[_Row, str, Decision]] = []
        for i, row in enumerate(self.rows):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            assert row.match is not None
            decision = decide(
                self.settings, self.model, row.match, row.identifiers, self.known, keys=row.keys
            )
            customer_id = decision.target or row.new_id
            added: _Added = (customer_id, row.match, row.keys, row.identifiers, decision.target is None)
            self.added.append(added)
            self.known.add(
                customer_id, row.match, row.keys, row.identifiers, new_customer=decision.target is None
            )
            decided.append((row, customer_id, decision))
        return decided

    # 3. assemble, audit and write

    async def write(self, decided: list[tuple[_Row, str, Decision]]) -> None:
        settings = self.settings
        actor = service._actor()
        existing_ids = sorted(
            {cid for _, cid, d in decided if d.target is not None}
            - {cid for _, cid, d in decided if d.target is None}
        )
        with self.stats.timed("write.load"):
            goldens = await self._load_existing(existing_ids)
        assembling = self.stats.timed("write.assemble")
        assembling.__enter__()

        # The source and index rows: COPY text where the rows came with theirs (PostgreSQL).
        postgres_text = self.db.postgres and all(row.copy is not None for row, _, _ in decided)
        rows: _TextRows | _ValueRows = _TextRows() if postgres_text else _ValueRows()
        reviews: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        events: list[tuple[EventPayload, datetime, str]] = []
        for row, customer_id, decision in decided:
            now = self.clock()
            stored = row.stored
            observed = row.observed_at or now
            trust = settings.source_trust.get(row.system, 10)
            rows.add(row, customer_id, now, observed, trust)
            record_id = row.record_id
            assert row.match is not None
            self.written_records.append((record_id, now, row.match))
            self.sources.setdefault(customer_id, set()).add((record_id, now))
            view = SourceView(
                row.record_id,
                row.system,
                trust,
                observed,
                frozenset(row.verified),
                {**stored, "kind": row.kind},
            )

            if decision.target is None:
                golden = _Golden(
                    id=customer_id,
                    values={
                        "kind": row.kind,
                        "status": row.status,
                        "addresses": [],
                        "external_ids": {},
                        "attributes": {},
                    },
                    provenance={},
                    version=1,
                    updated_at=now,
                    views=[view],
                    created=True,
                    row={"source_system": row.system, "created_at": now},
                )
                goldens[customer_id] = golden
                before, after, changed = _reassemble(golden)
                golden.version = 1  # one INSERT, with the assembled values
                cause = "registration"
            else:
                golden = goldens[customer_id]
                golden.views.append(view)
                before, after, changed = _reassemble(golden)
                cause = "source_record"
            if changed:
                golden.updated_at = now
                changes.append(
                    {
                        "customer_id": customer_id,
                        "actor": actor,
                        "cause": cause,
                        "reason": None,
                        "before": {k: before[k] for k in changed},
                        "after": {k: after[k] for k in changed},
                        "changed_at": now,
                    }
                )
            if decision.target is None:
                events.append(
                    (
                        CustomerRegistered.model_construct(
                            customer_id=customer_id,
                            kind=row.kind,
                            status=golden.values["status"],
                            source_system=row.system,
                            registered_at=now,
                        ),
                        now,
                        row.event_id,
                    )
                )
                for candidate, outcome in decision.reviews:
                    reviews.append(
                        {
                            "id": str(uuid.uuid4()),
                            "customer_id": customer_id,
                            "candidate_id": candidate,
                            "source_record_id": row.record_id,
                            "probability": outcome.probability,
                            "score": outcome.score,
                            "evidence": service._evidence(outcome),
                            "reason": decision.reason,
                            "status": "pending",
                            "created_at": now,
                            "decided_at": None,
                            "decided_by": None,
                            "decision_reason": None,
                        }
                    )
                self.outcomes.append("review" if decision.reviews else "created")
            else:
                if changed:
                    events.append(
                        (
                            CustomerUpdated.model_construct(
                                customer_id=customer_id,
                                record_version=golden.version,
                                changed_fields=changed,
                                cause="source_record",
                                updated_at=golden.updated_at,
                            ),
                            now,
                            row.event_id,
                        )
                    )
                self.outcomes.append("matched")
        assembling.__exit__(None, None, None)
        self.goldens = list(goldens.values())

        with self.stats.timed("write.customers"):
            await self.db.insert(CUSTOMERS, [_customer_insert(g) for g in goldens.values() if g.created])
            updated = [g for g in goldens.values() if not g.created and g.dirty]
            await self.db.update_customers(
                [
                    {
                        "id": g.id,
                        **{n: g.values[n] for n in service.GOLDEN_COLUMNS},
                        "provenance": g.provenance,
                        "updated_at": g.updated_at,
                        "version": g.version,
                    }
                    for g in updated
                ]
            )
        for table, values in ((REVIEWS, reviews), (CHANGES, changes)):
            with self.stats.timed(f"write.{table.name}"):
                await self.db.insert(table, values)
        await rows.write(self.db, self.stats)
        with self.stats.timed("write.events"):
            await publish_many(self.uow, events, self.db)

    async def _load_existing(self, customer_ids: list[str]) -> dict[str, _Golden]:
        """Stored customers the run joins records to, locked, with all their source records (from
        the cache where they are as an earlier run left them)."""
        goldens: dict[str, _Golden] = {}
        locked = await self.db.select_in(
            select(CUSTOMERS.c.id, CUSTOMERS.c.version).with_for_update(), CUSTOMERS.c.id, customer_ids
        )
        listed = await self.db.source_records_of(customer_ids)
        for customer_id, record_id, updated_at in listed:
            self.sources.setdefault(customer_id, set()).add((record_id, updated_at))
        misses: list[str] = []
        for customer_id, version in locked:
            cached = self.cache.golden(customer_id, version, frozenset(self.sources.get(customer_id, ())))
            if cached is None:
                misses.append(customer_id)
            else:
                goldens[customer_id] = cached
        self.stats.goldens_cached += len(goldens)
        self.stats.goldens_loaded += len(misses)
        rows = await self.db.select_in(select(CUSTOMERS), CUSTOMERS.c.id, misses)
        for row in rows:
            goldens[row.id] = _Golden(
                id=row.id,
                values={name: getattr(row, name) for name in service.GOLDEN_COLUMNS},
                provenance=row.provenance,
                version=row.version,
                updated_at=row.updated_at,
                views=[],
                created=False,
            )
        records = await self.db.select_in(
            select(
                SOURCES.c.customer_id,
                SOURCES.c.received_at,
                SOURCES.c.id,
                SOURCES.c.source_system,
                SOURCES.c.trust,
                SOURCES.c.observed_at,
                SOURCES.c.verified,
                _as_text(SOURCES.c.data),
                SOURCES.c.kind,
            ),
            SOURCES.c.customer_id,
            misses,
        )
        records.sort(key=lambda r: (r[0], r[1]))  # by received_at, as `of_customer` reads them
        for r in records:
            goldens[r.customer_id].views.append(
                SourceView(
                    r.id,
                    r.source_system,
                    r.trust,
                    r.observed_at,
                    frozenset(r.verified),
                    {**orjson.loads(r.data), "kind": r.kind},
                )
            )
        missing = set(customer_ids) - set(goldens)
        if missing:
            raise RuntimeError(f"customers vanished during the import: {sorted(missing)[:5]}")
        return goldens


def _customer_insert(golden: _Golden) -> dict[str, Any]:
    return {
        "id": golden.id,
        **{name: golden.values.get(name) for name in service.GOLDEN_COLUMNS},
        "source_system": golden.row["source_system"],
        "provenance": golden.provenance,
        "merged_into": None,
        "erased_at": None,
        "created_at": golden.row["created_at"],
        "updated_at": golden.updated_at,
        "version": golden.version,
    }


async def publish_many(
    uow: UnitOfWork, events: Sequence[tuple[EventPayload, datetime, str]], db: _Db
) -> None:
    """`uow.publish` for many events (payload, time, event id) in one statement: the same outbox rows,
    in the same order."""
    if not events:
        return
    rows = []
    for payload, at, event_id in events:
        event = new_event(payload, source=uow.source, time=at, event_id=event_id, trusted=True)
        rows.append(
            {
                "event_id": event.id,
                "topic": payload.topic.name,
                "key": event.subject,
                "type": event.type,
                "envelope": event.model_dump(mode="json"),
                "created_at": datetime.now(UTC),
            }
        )
    await db.insert(uow.tables.outbox, rows)
    # What `publish` counts, so that `commit()` wakes the relay (UnitOfWork has no publish_many yet).
    uow.published_in_bulk(len(rows))


# -- the import loop ------------------------------------------------------------------------------


def report_domain_error(report: Report, number: int, exc: DomainError) -> None:
    """A refused row in the report, as `batch.import_records` has always reported it."""
    for problem in exc.errors or []:
        report.errors.append(
            {"row": number, "field": problem.field.removeprefix("body."), "message": problem.message}
        )
    if not exc.errors:
        report.errors.append({"row": number, "field": None, "message": exc.detail})


@dataclass
class _Prepared:
    rows: list[_Row]
    errors: list[dict[str, Any]]


def prepare_rows(
    rows: Sequence[tuple[int, dict[str, Any]]],
    default_region: str | None,
    blocked: frozenset[str],
    source_system: str | None = None,
    copy: bool = False,
    ship: bool = False,
) -> _Prepared:
    """Validate, normalise, key and prepare raw rows (free of I/O: runs in a worker process; `copy`:
    with their COPY text, for PostgreSQL; `ship`: rows to be sent to another process, `_Row.shipped`).
    The errors are the report entries `batch.import_records` has always given: row, field, message."""
    report = Report()
    valid: list[_Row] = []
    for number, raw in rows:
        if "__error__" in raw:
            report.errors.append({"row": number, "field": None, "message": raw["__error__"]})
            continue
        if source_system and "source_system" not in raw:
            raw = {**raw, "source_system": source_system}
        try:
            data = SourceRecordIn.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                field_name = ".".join(map(str, err["loc"])) or None
                report.errors.append({"row": number, "field": field_name, "message": err["msg"]})
            continue
        try:
            normal = normalise_fields(data, default_region=default_region, blocked=blocked)
        except DomainError as exc:
            report_domain_error(report, number, exc)
            continue
        row = _Row(number, data, normal)
        row.prepare(copy)
        valid.append(row.shipped() if ship else row)
    return _Prepared(valid, report.errors)


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for an import: spawned (never forked from a process running an event loop and
    holding database connections), at lower priority (`WORKER_NICENESS`)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_lower_priority,
        initargs=(WORKER_NICENESS,),
    )


def _lower_priority(niceness: int) -> None:
    """Make this (worker) process `niceness` nicer, where the platform can."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(niceness)


def _give_raw(rows: Sequence[_Row], chunk: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Give shipped `rows` (a subsequence of `chunk`, in its order) their raw fields back."""
    given = iter(chunk)
    for row in rows:
        if row.data is None:
            for number, raw in given:
                if number == row.number:
                    row.raw = raw
                    break


@dataclass
class BulkResolver:
    """Resolves validated records (with their row numbers) chunk by chunk, in order.

    `resolve` may be called repeatedly (e.g. once per chunk of a file, `wait=False`, then `finish()`);
    each call continues where the last one ended. Rows whose values do not normalise become errors
    of the report.

    A run's writing (assembly, COPY, commit) goes on in the background while the next chunk is
    normalised; nothing reads the database before the previous run committed, so the decisions are
    those of strictly sequential processing.
    """

    uow_factory: Callable[[], UnitOfWork]
    settings: IdentitySettings
    matcher: service.Matcher
    chunk_size: int = DEFAULT_CHUNK
    stats: Stats = field(default_factory=Stats)
    clock: _Clock = field(default_factory=_Clock)
    cache: _Cache = field(default_factory=_Cache)
    _inflight: _InFlight | None = None
    _ahead: _Ahead | None = None
    _postgres: bool | None = None

    async def resolve(
        self,
        records: Sequence[tuple[int, SourceRecordIn]],
        report: Report,
        *,
        progress: Callable[[int], None] | None = None,
        wait: bool = True,
    ) -> Report:
        """Resolve `records`; with `wait=False` the last run may still be writing (see `finish`)."""
        done = False
        with heap.bulk_job():
            try:
                for chunk in _batches(records, self.chunk_size):
                    await self._chunk(chunk, report)
                    if progress is not None:
                        progress(len(chunk))
                done = True
            finally:
                if wait or not done:
                    await self.finish()
                    self.cache.clear()
        return report

    async def finish(self) -> None:
        """Wait until everything resolved so far is committed."""
        await self._drop_ahead()
        await self._settle()

    async def _drop_ahead(self) -> None:
        """Give up the reads begun for the next chunk (they assumed what is no longer so)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ahead.task

    async def _settle(self) -> bool:
        """Wait for the run in flight, if any: whether it was committed as decided."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return True
        return await inflight.task

    async def _is_postgres(self) -> bool:
        if self._postgres is None:
            async with self.uow_factory() as uow:
                self._postgres = (await _Db.of(uow.session)).postgres
        return self._postgres

    async def _normalise(self, chunk: Sequence[tuple[int, SourceRecordIn]], report: Report) -> list[_Row]:
        valid: list[_Row] = []
        blocked = frozenset(self.settings.blocked_identifiers)
        copy = await self._is_postgres()
        for i, (number, data) in enumerate(chunk):
            if i % 32 == 0:
                await asyncio.sleep(0)  # let the previous run's writing go on meanwhile
            try:
                normal = normalise_fields(data, default_region=self.settings.default_region, blocked=blocked)
            except DomainError as exc:
                report_domain_error(report, number, exc)
                continue
            row = _Row(number, data, normal)
            row.prepare(copy)
            valid.append(row)
        return valid

    async def resolve_raw(
        self,
        rows: Sequence[tuple[int, dict[str, Any]]],
        report: Report,
        *,
        source_system: str | None = None,
        progress: Callable[[int], None] | None = None,
        workers: int = IMPORT_WORKERS,
    ) -> Report:
        """Resolve raw rows (row number, field values as read from a file), validating them as
        `SourceRecordIn` on the way; invalid rows become errors of the report.

        With `workers` > 0 and more than one chunk, validation and normalisation (about a third of
        the work per record) run in that many worker processes, at lower priority, a few chunks ahead
        of the chunk being decided and written here (the first chunk is prepared here while they
        start): on two cores, the decisions seldom wait for them."""
        chunks = _cut(rows, _chunk_sizes(len(rows), self.chunk_size))
        region = self.settings.default_region
        blocked = frozenset(self.settings.blocked_identifiers)
        executor: ProcessPoolExecutor | None = None
        if workers > 0 and len(chunks) > 1:
            executor = _worker_pool(workers)
        loop = asyncio.get_running_loop()
        copy = await self._is_postgres()

        def submit(
            chunk: Sequence[tuple[int, dict[str, Any]]], here: bool = False
        ) -> asyncio.Future[_Prepared]:
            if executor is None or here:
                done: asyncio.Future[_Prepared] = loop.create_future()
                done.set_result(prepare_rows(chunk, region, blocked, source_system, copy))
                return done
            return loop.run_in_executor(
                executor, prepare_rows, chunk, region, blocked, source_system, copy, True
            )

        # `ahead` chunks are in the workers' hands while one is resolved here; the first is prepared
        # here, while the workers start (a process spawned and its imports: about a second). Without
        # workers, only the next chunk is prepared ahead (its first run's reads begin early, `_run`).
        ahead = workers + 1 if executor is not None else 1
        pending = collections.deque(submit(c) for c in chunks[1 : ahead + 1])  # (consumed: dropped)
        if chunks:
            pending.appendleft(submit(chunks[0], here=True))
        with heap.bulk_job():
            finished = False
            try:
                for index, chunk in enumerate(chunks):
                    with self.stats.timed("normalise"):
                        prepared = await pending.popleft()
                    _give_raw(prepared.rows, chunk)
                    if index + ahead + 1 < len(chunks):
                        pending.append(submit(chunks[index + ahead + 1]))
                    report.errors.extend(prepared.errors)
                    await self._resolve_rows(prepared.rows, report, pending[0] if pending else None)
                    if progress is not None:
                        progress(len(chunk))
                finished = True
            finally:
                try:
                    await self.finish()
                    self.cache.clear()  # the job is over: its objects go before the collector's pass
                finally:
                    if executor is not None:
                        executor.shutdown(wait=finished, cancel_futures=True)
        return report

    async def _chunk(self, chunk: Sequence[tuple[int, SourceRecordIn]], report: Report) -> None:
        with self.stats.timed("normalise"):
            rows = await self._normalise(chunk, report)
        await self._resolve_rows(rows, report)

    async def _resolve_rows(
        self, rows: list[_Row], report: Report, upcoming: Awaitable[_Prepared] | None = None
    ) -> None:
        """Resolve normalised rows, in order (updates one by one, runs of new records in bulk).

        On PostgreSQL each run of new records is decided while the run before is still being written,
        and the reads for the first run of the next chunk (`upcoming`, if given) begin while the last
        run of this one is decided (see `_run`); elsewhere each run waits for the one before."""
        if not await self._is_postgres():
            upcoming = None
            with self.stats.timed("wait"):
                await self.finish()
        if not rows:
            return
        pending = [self._inflight.run] if self._inflight else []
        segments = await self._segments(rows, pending)
        for i, segment in enumerate(segments):
            if isinstance(segment, _Row):
                # The same source record again: an update, resolved alone (after what came before it).
                await self.finish()
                await self._one(segment, report)
            else:
                await self._run(segment, report, upcoming if i == len(segments) - 1 else None)

    async def _segments(self, rows: list[_Row], pending: Sequence[_Pending]) -> list[list[_Row] | _Row]:
        """`rows` cut into runs of new records and, between them, single updates: rows whose source
        record is stored already, or will be by a pending run or an earlier row."""
        by_system: dict[str, set[str]] = {}
        for row in rows:
            if row.given_source_id is not None:
                by_system.setdefault(row.system, set()).add(row.given_source_id)
        seen: set[tuple[str, str]] = set().union(*(p.source_keys for p in pending))
        async with self.uow_factory() as uow:
            db = await _Db.of(uow.session)
            for system, ids in by_system.items():
                found = await db.select_in(
                    select(SOURCES.c.source_id).where(SOURCES.c.source_system == system),
                    SOURCES.c.source_id,
                    ids,
                )
                seen.update((system, sid) for (sid,) in found)
        segments: list[list[_Row] | _Row] = []
        run: list[_Row] = []
        for row in rows:
            key = (row.system, row.given_source_id) if row.given_source_id is not None else None
            if key is not None and key in seen:
                if run:
                    segments.append(run)
                    run = []
                segments.append(row)
                continue
            if key is not None:
                seen.add(key)
            run.append(row)
        if run:
            segments.append(run)
        return segments

    async def _run(self, rows: list[_Row], report: Report, upcoming: Awaitable[_Prepared] | None) -> None:
        """Decide a run of new records and start writing it (in the background).

        With `upcoming` (the next chunk, PostgreSQL only), the reads for the next chunk's first run
        begin before this run is decided: they see neither this run nor, maybe, the one in flight, and
        replay their additions once this run is decided (see `_read`)."""
        inflight = self._inflight
        pending = [inflight.run] if inflight else []
        ahead, self._ahead = self._ahead, None
        read = await ahead.task if ahead is not None else None
        if (
            read is not None
            and len(read[0]) == len(rows)
            and all(a is b for a, b in zip(read[0], rows, strict=True))
        ):
            run = read[1]
            self.stats.read_ahead += 1
        else:
            run = await self._read(rows, pending)
        keys = {(r.system, r.given_source_id) for r in rows if r.given_source_id is not None}
        this = _Pending(rows[0].record_id, keys, asyncio.get_running_loop().create_future())
        if upcoming is not None:
            self._ahead = _Ahead(asyncio.create_task(self._read_ahead(upcoming, [*pending, this])))
        with self.stats.timed("decide"):
            decided = await run.decide_all()
        with self.stats.timed("wait"):
            committed = await self._settle()
        if not committed:
            # The run before was redone one by one: these decisions, and the reads begun for the next
            # chunk, assumed it otherwise.
            self.stats.redecided += 1
            await self._drop_ahead()
            run = await self._read(rows, [])
            with self.stats.timed("decide"):
                decided = await run.decide_all()
        this.added.set_result(run.added)
        task = asyncio.create_task(self._write(run, decided, report))
        self._inflight = _InFlight(task, this)

    async def _read_ahead(
        self, upcoming: Awaitable[_Prepared], pending: Sequence[_Pending]
    ) -> tuple[list[_Row], _Run] | None:
        """The reads for the first run of the next chunk (None if the chunk begins with an update)."""
        prepared = await upcoming
        if not prepared.rows:
            return None
        first = (await self._segments(prepared.rows, pending))[0]
        if isinstance(first, _Row):
            return None
        return first, await self._read(first, pending)

    async def _read(self, rows: list[_Row], pending: Sequence[_Pending]) -> _Run:
        """A run of `rows` with everything its decisions read, in a read transaction of its own.

        With runs pending (PostgreSQL only: decided, or being decided, and not committed), the
        transaction is REPEATABLE READ, so all its reads see one snapshot; the additions of the
        pending runs that snapshot does not hold are then replayed over what was read, exactly as
        their decisions made them (waiting for the decisions of a run still being decided). The
        decisions are then those of strictly sequential processing, as long as the pending runs
        commit as decided (otherwise `_run` decides again)."""
        async with self.uow_factory() as uow:
            unseen: list[_Pending] = []
            if pending:
                await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            db = await _Db.of(uow.session)
            if pending:
                # The snapshot is taken by this first statement: which pending runs does it hold?
                found = await db.select_in(select(SOURCES.c.id), SOURCES.c.id, [p.probe for p in pending])
                visible = {probe for (probe,) in found}
                unseen = [p for p in pending if p.probe not in visible]
            model = await self.matcher.current(uow)
            run = _Run(uow, db, self.settings, model, rows, self.clock, self.stats, self.cache)
            with self.stats.timed("prefetch"):
                await run.prefetch()
            if unseen:
                self.stats.replayed_runs += 1
                replay = [added for p in unseen for added in await p.added]
                with self.stats.timed("prefetch"):
                    await run.replay(replay)
        return run

    async def _write(self, run: _Run, decided: list[tuple[_Row, str, Decision]], report: Report) -> bool:
        try:
            async with self.uow_factory() as uow:
                run.bind(uow, await _Db.of(uow.session))
                with self.stats.timed("write"):
                    await run.write(decided)
                    with self.stats.timed("write.commit"):
                        await uow.commit()
        except IntegrityError:
            # Another writer stored one of these source records meanwhile: one by one, as ingest would.
            self.stats.fallbacks += 1
            for row in run.rows:
                await self._one(row, report)
            return False
        # Committed: later runs may reuse what this one wrote (entries are checked before use).
        self.cache.keep_records(run.written_records)
        self.cache.keep_goldens(run.goldens, run.sources)
        heap.keep()  # the cache grows by the run: no later collection of the import walks it again
        self.stats.runs += 1
        report.outcomes.update(run.outcomes)
        return True

    async def _one(self, row: _Row, report: Report) -> None:
        try:
            result = await service.ingest(self.uow_factory(), self.settings, self.matcher, row.given())
        except DomainError as exc:
            report_domain_error(report, row.number, exc)
            return
        report.outcomes[result.outcome] += 1

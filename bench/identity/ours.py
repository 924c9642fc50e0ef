"""Our identity service on the benchmark records, one at a time, as live traffic would arrive.

The runtime is the real one (`services.identity.app.build`) on its own database: a SQLite file in
a temporary folder, or the PostgreSQL database given (`postgresql+asyncpg://…`, which must hold no
source records yet). Each record goes through `services.identity.service.ingest` in arrival order
and only that call is timed; the outbox relay runs alongside, as in production. Afterwards the
clusters are read from `source_records` (each record's `customer_id` is its golden record), and
the pending review pairs too, to show what a reviewer accepting every proposal would reach.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OursResult:
    clusters: dict[str, str]  # source_id → customer id
    reviews: list[tuple[str, str, float]]  # (customer, candidate, probability) pending
    latencies: list[float]  # seconds per ingest call, in arrival order
    seconds_total: float  # wall time of the whole loop (validation included)
    outcomes: dict[str, int]
    errors: dict[str, int]
    error_examples: list[str] = field(default_factory=list)
    database: str = ""
    # Per record in arrival order: (source_id, outcome, best candidate's probability or None).
    decisions: list[tuple[str, str, float | None]] = field(default_factory=list)
    review_reasons: dict[str, str] = field(default_factory=dict)  # source_id → why it went to review
    seconds_training: float = 0.0  # estimating the weights from the records before the loop

    def latency_summary(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

        return {
            "median_ms": statistics.median(ordered) * 1000,
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": ordered[-1] * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000,
        }

    @property
    def records_per_second(self) -> float:
        return len(self.latencies) / self.seconds_total if self.seconds_total else 0.0


def _fit_on(records: list[dict[str, Any]], settings: Any) -> Any:
    from services.identity.matching import fit
    from services.identity.normalisation import match_record, normalise_fields
    from services.identity.schemas import SourceRecordIn

    prepared = []
    for raw in records:
        try:
            normal = normalise_fields(
                SourceRecordIn.model_validate(raw), default_region=settings.default_region
            )
        except Exception:  # a record the service refuses does not train it either
            continue
        prepared.append(match_record(str(raw.get("source_id")), normal.match))
    return fit(prepared)


async def _run(
    records: list[dict[str, Any]],
    database_url: str,
    progress: Callable[[int], None] | None,
    train: bool = True,
) -> OursResult:
    from sqlalchemy import text

    from services.identity.app import build
    from services.identity.schemas import SourceRecordIn
    from services.identity.service import ingest
    from services.identity.settings import load_settings
    from shared.messaging.bus import InProcessBus

    settings = load_settings(database_url=database_url)
    bus = InProcessBus()
    runtime = build(settings, bus)
    await runtime.start()
    await bus.start()
    try:
        async with runtime.engine.connect() as conn:
            existing = (await conn.execute(text("SELECT count(*) FROM source_records"))).scalar_one()
        if existing:
            raise RuntimeError(
                f"the identity database already holds {existing} source records: give an empty one"
            )
        matcher = runtime.app.state.matcher
        if train:
            # Like Splink, estimate the weights from the data itself (unsupervised: no labels), then
            # resolve the records one by one as they would arrive.
            t_train = time.perf_counter()
            matcher.model = _fit_on(records, settings)
            matcher.loaded = True
            training_seconds = time.perf_counter() - t_train
        else:
            training_seconds = 0.0
        latencies: list[float] = []
        outcomes: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        examples: list[str] = []
        decisions: list[tuple[str, str, float | None]] = []
        started = time.perf_counter()
        for i, raw in enumerate(records):
            data = SourceRecordIn.model_validate(raw)
            t0 = time.perf_counter()
            try:
                result = await ingest(runtime.uow(), settings, matcher, data)
            except Exception as exc:  # a record the service refuses stays on its own
                latencies.append(time.perf_counter() - t0)
                errors[type(exc).__name__] += 1
                decisions.append((str(raw.get("source_id")), "error", None))
                if len(examples) < 5:
                    examples.append(f"{raw.get('source_id')}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t0)
            outcomes[result.outcome] += 1
            best = result.best.probability if result.best is not None else None
            decisions.append((result.record.source_id, result.outcome, best))
            if progress is not None and (i + 1) % 100 == 0:
                progress(i + 1)
        seconds = time.perf_counter() - started
        if progress is not None:
            progress(len(records))
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT source_id, customer_id FROM source_records"))).all()
            review_rows = (
                await conn.execute(
                    text(
                        "SELECT customer_id, candidate_id, probability FROM match_reviews "
                        "WHERE status = 'pending'"
                    )
                )
            ).all()
            reasons = (
                await conn.execute(
                    text(
                        "SELECT s.source_id, r.reason FROM match_reviews r "
                        "JOIN source_records s ON s.id = r.source_record_id"
                    )
                )
            ).all()
            merged: dict[str, str] = dict(
                (
                    await conn.execute(
                        text("SELECT id, merged_into FROM customers WHERE merged_into IS NOT NULL")
                    )
                ).all()
            )
    finally:
        await runtime.stop()
        await bus.stop()

    def root(customer: str) -> str:
        seen = 0
        while customer in merged and seen < 1000:
            customer, seen = merged[customer], seen + 1
        return customer

    return OursResult(
        clusters={str(s): root(str(c)) for s, c in rows},
        reviews=[(root(str(a)), root(str(b)), float(p or 0.0)) for a, b, p in review_rows],
        latencies=latencies,
        seconds_total=seconds,
        outcomes=dict(outcomes),
        errors=dict(errors),
        error_examples=examples,
        database=runtime.engine.url.render_as_string(hide_password=True),
        decisions=decisions,
        review_reasons={str(source): str(reason or "") for source, reason in reasons},
        seconds_training=training_seconds,
    )


def run_ours(
    records: list[dict[str, Any]],
    database_url: str | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    train: bool = True,
) -> OursResult:
    """Ingest `records` in order into a fresh identity service and read back its clusters
    (with `train`, after estimating the weights from the records, unsupervised)."""
    if database_url is not None:
        return asyncio.run(_run(records, database_url, progress, train))
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as folder:
        return asyncio.run(_run(records, f"sqlite+aiosqlite:///{folder}/identity.db", progress, train))


def with_reviews_accepted(result: OursResult) -> dict[str, str]:
    """The clusters if a reviewer merged every pending proposal (an upper bound on recall)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in result.reviews:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    return {source: find(customer) for source, customer in result.clusters.items()}


@dataclass
class BatchResult:
    clusters: dict[str, str]  # source_id → golden customer id
    seconds_total: float  # resolving the whole batch (validation, normalisation, decisions, writing)
    outcomes: dict[str, int]
    rejected: int
    phases: dict[str, float]  # wall time per phase of the bulk resolver
    counters: dict[str, int] = field(default_factory=dict)  # the bulk resolver's counts (cache, pairs)
    database: str = ""

    @property
    def records_per_second(self) -> float:
        total = sum(self.outcomes.values()) + self.rejected
        return total / self.seconds_total if self.seconds_total else 0.0


async def _run_batch(
    records: list[dict[str, Any]],
    database_url: str,
    progress: Callable[[int], None] | None,
    workers: int | None,
) -> BatchResult:
    """The records resolved as an import resolves them (`BulkResolver`, a chunk per transaction)."""
    from sqlalchemy import text

    from services.identity.app import build
    from services.identity.batch import IMPORT_WORKERS, Report
    from services.identity.bulk import BulkResolver
    from services.identity.settings import load_settings
    from shared.messaging.bus import InProcessBus

    settings = load_settings(database_url=database_url)
    bus = InProcessBus()
    runtime = build(settings, bus)
    await runtime.start()
    await bus.start()  # the outbox relay delivers the import's events meanwhile, as in production
    try:
        async with runtime.engine.connect() as conn:
            if (await conn.execute(text("SELECT count(*) FROM source_records"))).scalar_one():
                raise RuntimeError("the identity database already holds source records: give an empty one")
        matcher = runtime.app.state.matcher
        matcher.model = _fit_on(records, settings)  # the same unsupervised weights as the one-by-one run
        matcher.loaded = True
        report = Report()
        resolver = BulkResolver(runtime.uow, settings, matcher)
        started = time.perf_counter()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done)

        numbered = list(enumerate(records, start=1))
        await resolver.resolve_raw(
            numbered, report, progress=advance, workers=IMPORT_WORKERS if workers is None else workers
        )
        seconds = time.perf_counter() - started
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT source_id, customer_id FROM source_records"))).all()
            merged_rows = await conn.execute(
                text("SELECT id, merged_into FROM customers WHERE merged_into IS NOT NULL")
            )
            merged: dict[str, str] = {str(a): str(b) for a, b in merged_rows.all()}
    finally:
        await runtime.stop()
        await bus.stop()

    def root(customer: str) -> str:
        seen = 0
        while customer in merged and seen < 1000:
            customer, seen = merged[customer], seen + 1
        return customer

    return BatchResult(
        clusters={str(s): root(str(c)) for s, c in rows},
        seconds_total=seconds,
        outcomes=dict(report.outcomes),
        rejected=len(report.errors),
        phases=dict(resolver.stats.seconds),
        counters={k: v for k, v in vars(resolver.stats).items() if isinstance(v, int)},
        database=runtime.engine.url.render_as_string(hide_password=True),
    )


def run_batch(
    records: list[dict[str, Any]],
    database_url: str | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    workers: int | None = None,
) -> BatchResult:
    """Resolve `records` as one import into a fresh identity database and read back its clusters
    (`workers`: worker processes, as many as an import has by default if None)."""
    if database_url is not None:
        return asyncio.run(_run_batch(records, database_url, progress, workers))
    with tempfile.TemporaryDirectory(prefix="bench-identity-batch-") as folder:
        url = f"sqlite+aiosqlite:///{folder}/identity.db"
        return asyncio.run(_run_batch(records, url, progress, workers))

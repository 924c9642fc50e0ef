"""Batch jobs: import source records from a file, re-run matching over everyone, re-estimate weights.

Each runs the same use cases as the API (so a batch import matches exactly as live traffic would),
shows a progress bar and ends with a report. A malformed row never blocks the valid ones: it is
reported with its row number, field and reason.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import select

from services.identity import service
from services.identity.matching import MatchModel, fit, score, tune_from_labels
from services.identity.models import CustomerRow, MatchReviewRow, SourceRecordRow
from services.identity.normalisation import match_record
from services.identity.repository import LineageRepository
from services.identity.settings import IdentitySettings
from shared.errors import DomainError
from shared.runtime import ServiceRuntime

# Worker processes that validate and normalise an import's chunks ahead of the one being resolved.
# They run at a lower priority (`bulk.WORKER_NICENESS`), so a second one only takes the slack: early in
# an import, while decisions are cheap (few customers stored yet), one worker could not keep up.
# (Alternated 100,000-record imports on two cores: +1 to +11 % over one worker; within noise once the
# first chunk was prepared in the deciding process, but the idle CPU fell from 13 to 9 s.)
IMPORT_WORKERS = 2


@dataclass
class Report:
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "rejected": len(self.errors), "errors": self.errors[:1000]}


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a JSONL or CSV file (CSV: flat columns; `addresses`/`external_ids`/`attributes` as JSON)."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield number, {"__error__": f"not JSON: {exc.msg}"}
        return
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            clean: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
            for key in ("addresses", "external_ids", "attributes", "verified"):
                if key in clean:
                    try:
                        clean[key] = json.loads(clean[key])
                    except json.JSONDecodeError:
                        clean["__error__"] = f"column {key} is not JSON"
            yield number, clean


async def import_records(
    runtime: ServiceRuntime,
    path: Path,
    *,
    source_system: str | None = None,
    show_progress: bool = True,
    workers: int = IMPORT_WORKERS,
) -> Report:
    """Resolve a file's records in file order, a chunk per transaction (`services.identity.bulk`):
    the same decisions as one `service.ingest` per record, with a handful of queries per chunk.

    `workers` processes validate and normalise the chunks ahead of the one being resolved (0: all
    in this process)."""
    from services.identity.bulk import DEFAULT_CHUNK, BulkResolver

    settings = cast(IdentitySettings, runtime.settings)
    matcher: service.Matcher = runtime.app.state.matcher
    report = Report()
    rows = list(read_rows(path))
    resolver = BulkResolver(runtime.uow, settings, matcher, chunk_size=DEFAULT_CHUNK)
    with _progress() as progress:
        task = progress.add_task(f"Resolving {path.name}", total=len(rows), visible=show_progress)
        await resolver.resolve_raw(
            rows,
            report,
            source_system=source_system,
            progress=lambda n: progress.advance(task, n),
            workers=workers,
        )
    report.errors.sort(key=lambda e: int(e["row"]))  # file order, as when rows were resolved one by one
    return report


async def rematch(runtime: ServiceRuntime, *, show_progress: bool = True) -> Report:
    """Re-run matching between existing customers with the current model (e.g. after training)."""
    settings = cast(IdentitySettings, runtime.settings)
    matcher: service.Matcher = runtime.app.state.matcher
    report = Report()
    async with runtime.uow() as uow:
        model = await matcher.current(uow)
        ids = list(
            await uow.session.scalars(
                select(CustomerRow.id)
                .where(CustomerRow.merged_into.is_(None), CustomerRow.erased_at.is_(None))
                .order_by(CustomerRow.created_at)
            )
        )
    with _progress() as progress:
        task = progress.add_task("Re-matching customers", total=len(ids), visible=show_progress)
        for customer_id in ids:
            progress.advance(task)
            async with runtime.uow() as uow:
                root = await uow.session.get(CustomerRow, customer_id)
                if root is None or root.merged_into is not None or root.erased_at is not None:
                    report.outcomes["already merged"] += 1
                    continue
                records = list(
                    await uow.session.scalars(
                        select(SourceRecordRow).where(SourceRecordRow.customer_id == customer_id)
                    )
                )
                best: dict[str, Any] = {}
                for record in records:
                    scored = await service._score_candidates(
                        uow, settings, model, match_record(record.id, record.match), keep=()
                    )
                    for candidate, result in scored.items():
                        if candidate != customer_id and (
                            candidate not in best or result.probability > best[candidate].probability
                        ):
                            best[candidate] = result
                if not best:
                    report.outcomes["unique"] += 1
                    continue
                best_id, result = max(best.items(), key=lambda kv: kv[1].probability)
                if result.probability >= settings.auto_merge_threshold:
                    other = await uow.session.get(CustomerRow, best_id)
                    assert other is not None
                    survivor, absorbed = sorted((root, other), key=lambda c: c.created_at)
                    await service.merge(
                        uow,
                        survivor.id,
                        absorbed.id,
                        method="probabilistic",
                        score_value=result.probability,
                        evidence=service._evidence(result),
                        reason="batch re-resolution",
                    )
                    report.outcomes["merged"] += 1
                elif result.probability >= settings.review_threshold:
                    if not await LineageRepository(uow.session).pending_between(customer_id, best_id):
                        uow.session.add(
                            MatchReviewRow(
                                id=__import__("uuid").uuid4().__str__(),
                                customer_id=customer_id,
                                candidate_id=best_id,
                                source_record_id=None,
                                probability=result.probability,
                                score=result.score,
                                evidence=service._evidence(result),
                                reason="batch re-resolution",
                                status="pending",
                                created_at=service._now(),
                            )
                        )
                        await uow.commit()
                    report.outcomes["sent to review"] += 1
                else:
                    report.outcomes["unique"] += 1
    return report


async def train(
    runtime: ServiceRuntime, *, from_reviews: bool = False, sample: int = 20_000, seed: int = 7
) -> dict[str, Any]:
    """Estimate the match weights from the data (EM over blocked pairs, u from random pairs) and, if
    asked, tune them with the decisions people made in the review queue. Activates the new model."""
    async with runtime.uow() as uow:
        rows = list(await uow.session.scalars(select(SourceRecordRow).limit(200_000)))
        model = await runtime.app.state.matcher.current(uow)
        reviews = await LineageRepository(uow.session).decided_reviews() if from_reviews else []
        by_id = {r.id: r for r in rows}
        by_customer: dict[str, list[SourceRecordRow]] = {}
        for r in rows:
            by_customer.setdefault(r.customer_id, []).append(r)
    records = [match_record(r.id, r.match) for r in rows]
    if len(records) < 10:
        raise DomainError("too few source records to estimate weights (need at least 10)")
    # Estimation is CPU work (seconds on a large register): off the event loop, so the service keeps serving.
    model = await asyncio.to_thread(
        fit, records, model, sample_pairs=min(sample, len(records) * 10), seed=seed
    )
    labelled = []
    for review in reviews:
        left = by_customer.get(review.customer_id) or (
            [by_id[review.source_record_id]] if review.source_record_id in by_id else []
        )
        right = by_customer.get(review.candidate_id, [])
        if left and right:
            labelled.append(
                (
                    match_record(left[0].id, left[0].match),
                    match_record(right[0].id, right[0].match),
                    review.status == "merged",
                )
            )
    if labelled:
        model = tune_from_labels(model, labelled)
    origin = "em+reviews" if labelled else "em"
    row = await service.save_model(
        runtime.uow(),
        model,
        origin,
        f"{len(records)} records, {len(labelled)} reviewed pairs",
        trained_on=len(records),
    )
    runtime.app.state.matcher.use(model, row.id)
    example = score(records[0], records[0], model)
    return {
        "origin": origin,
        "records": len(records),
        "reviewed_pairs": len(labelled),
        "prior": model.prior,
        "self_match_probability": round(example.probability, 6),
        "model": MatchModel.to_json(model),
    }


async def auto_train(runtime: ServiceRuntime) -> None:
    """Keep the weights fitted to the register as it grows, with no one having to remember.

    Every `auto_train_interval` seconds: when there is no trained model and the register holds at
    least `auto_train_min_records` source records, or it has grown `auto_train_growth` times since
    the last training, estimate the weights again (unsupervised) and activate them. On PostgreSQL
    only one replica trains at a time (an advisory lock); the others pick the model up.
    """
    import contextlib

    from sqlalchemy import func, text

    from services.identity.models import MatchModelRow
    from shared.logging import get_logger

    log = get_logger(__name__)
    settings = cast(IdentitySettings, runtime.settings)
    while True:
        await asyncio.sleep(settings.auto_train_interval)
        try:
            async with runtime.uow() as uow:
                count = int(await uow.session.scalar(select(func.count()).select_from(SourceRecordRow)) or 0)
                active = await uow.session.scalar(
                    select(MatchModelRow)
                    .where(MatchModelRow.active.is_(True))
                    .order_by(MatchModelRow.created_at.desc())
                )
            trained_on = int((active.model.get("trained_on") or 0) if active is not None else 0)
            due = count >= settings.auto_train_min_records and (
                active is None or (trained_on and count >= trained_on * settings.auto_train_growth)
            )
            if not due:
                continue
            async with runtime.engine.connect() as lock:
                if runtime.engine.dialect.name == "postgresql":
                    got = await lock.scalar(
                        text("SELECT pg_try_advisory_lock(hashtext('identity:auto-train'))")
                    )
                    if not got:
                        continue
                try:
                    summary = await train(runtime)
                    log.info("match_model_trained", records=summary["records"], prior=summary["prior"])
                finally:
                    if runtime.engine.dialect.name == "postgresql":
                        with contextlib.suppress(Exception):
                            await lock.execute(
                                text("SELECT pg_advisory_unlock(hashtext('identity:auto-train'))")
                            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("match_model_training_failed", error=repr(exc))

"""Identity's use cases. Each runs in one unit of work and commits its state with its events.

Resolution of an incoming source record (`ingest`):
1. the same (source system, source id) again updates that record;
2. strong identifiers (national id, loyalty card, an external id) shared with exactly one customer
   match deterministically, unless the scored comparison contradicts it (then a person reviews);
3. otherwise candidates come from the blocking index and are scored (Fellegi–Sunter): at or above
   the auto-merge threshold the record joins that customer; between the review and auto-merge
   thresholds a new customer is created and the pair goes to the review queue; below, a new customer.
Over-merging is guarded: an identifier value shared by many customers is not used, blocks larger
than a cap are skipped, and a match that would join several customers or grow one past a size
limit goes to review instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.identity.domain import SourceView, assemble, changed_fields
from services.identity.matching import MatchModel, MatchResult, blocking_keys, score
from services.identity.matching.scoring import ScoreFloor, review_floor
from services.identity.models import (
    CustomerRow,
    MatchModelRow,
    MatchReviewRow,
    MergeRow,
    ProfileChangeRow,
    SourceRecordRow,
)
from services.identity.normalisation import match_record, normalise_fields, search_keys
from services.identity.repository import (
    CustomerRepository,
    IndexRepository,
    LineageRepository,
    SourceRecordRepository,
)
from services.identity.schemas import CustomerPatch, ProfileFields, SourceRecordIn
from services.identity.settings import IdentitySettings
from shared.context import actor_var
from shared.contracts.identity import (
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
    CustomerUpdated,
)
from shared.errors import Conflict, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.uow import UnitOfWork

STRONG_KINDS = ("national_id", "card")
GOLDEN_COLUMNS = (
    "kind",
    "status",
    "given_name",
    "family_name",
    "organisation_name",
    "email",
    "phone",
    "language",
    "birth_date",
    "gender",
    "national_id",
    "branch_id",
    "addresses",
    "external_ids",
    "attributes",
)


@dataclass
class Matcher:
    """The match model in use: the active trained one, or the built-in default.

    Re-read from the database every `refresh_seconds`, so every replica picks up a model that
    another one trained."""

    model: MatchModel = field(default_factory=MatchModel.default)
    loaded: bool = False
    model_id: str | None = None
    refresh_seconds: float = 60.0
    _checked_at: float = 0.0

    async def current(self, uow: UnitOfWork) -> MatchModel:
        import time

        now = time.monotonic()
        if not self.loaded or now - self._checked_at > self.refresh_seconds:
            row = await LineageRepository(uow.session).active_model()
            if row is not None and row.id != self.model_id:
                self.model, self.model_id = MatchModel.from_json(row.model), row.id
            self.loaded, self._checked_at = True, now
        return self.model

    def use(self, model: MatchModel, model_id: str) -> None:
        import time

        self.model, self.model_id, self.loaded, self._checked_at = model, model_id, True, time.monotonic()


@dataclass
class IngestResult:
    customer: CustomerRow
    record: SourceRecordRow
    outcome: str
    best: MatchResult | None = None
    candidate_id: str | None = None
    review_id: str | None = None


def _actor() -> str:
    return actor_var.get() or "system"


def _now() -> datetime:
    return datetime.now(UTC)


def _snapshot(row: CustomerRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in GOLDEN_COLUMNS:
        value = getattr(row, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


# -- golden record assembly ---------------------------------------------------------------------


async def reassemble(
    uow: UnitOfWork,
    customer: CustomerRow,
    *,
    cause: str,
    reason: str | None = None,
    records: list[SourceRecordRow] | None = None,
) -> list[str]:
    """Rebuild a golden record from its source records (all of them: given, or read); audit what changed."""
    if records is None:
        records = await SourceRecordRepository(uow.session).of_customer(customer.id)
    if not records:
        return []
    before = _snapshot(customer)
    golden = assemble(
        [
            SourceView(
                r.id,
                r.source_system,
                r.trust,
                r.observed_at,
                frozenset(r.verified),
                {**r.data, "kind": r.kind},
            )
            for r in records
        ]
    )
    from datetime import date

    for name in GOLDEN_COLUMNS:
        value = golden.values.get(name)
        if name == "birth_date" and isinstance(value, str):
            value = date.fromisoformat(value)
        if name in ("addresses",) and value is None:
            value = []
        if name in ("external_ids", "attributes") and value is None:
            value = {}
        if name in ("kind", "status") and value is None:
            continue
        setattr(customer, name, value)
    customer.provenance = golden.provenance
    after = _snapshot(customer)
    changed = changed_fields(before, after)
    if changed:
        customer.updated_at = _now()
        uow.session.add(
            ProfileChangeRow(
                customer_id=customer.id,
                actor=_actor(),
                cause=cause,
                reason=reason,
                before={k: before[k] for k in changed},
                after={k: after[k] for k in changed},
                changed_at=_now(),
            )
        )
    return changed


async def _index(
    uow: UnitOfWork, record: SourceRecordRow, identifiers: list[tuple[str, str]], *, fresh: bool = False
) -> None:
    keys = blocking_keys(match_record(record.id, record.match))
    await IndexRepository(uow.session).replace(
        record, identifiers, keys, search_keys(record.match), fresh=fresh
    )


# -- ingestion and matching ---------------------------------------------------------------------


async def ingest(
    uow: UnitOfWork,
    settings: IdentitySettings,
    matcher: Matcher,
    data: SourceRecordIn,
    *,
    attributes: Any = None,
) -> IngestResult:
    """Take one source record: update, match into an existing customer, or create one."""
    normal = normalise_fields(
        data, default_region=settings.default_region, blocked=frozenset(settings.blocked_identifiers)
    )
    if attributes is not None:
        normal.display["attributes"] = attributes
    now = _now()
    observed = data.observed_at or now
    stored = {**normal.display, "status": data.status}
    stored.pop("verified", None)
    stored.pop("observed_at", None)
    async with uow:
        sources = SourceRecordRepository(uow.session)
        customers = CustomerRepository(uow.session)
        if data.source_id is not None and (
            existing := await sources.by_source(data.source_system, data.source_id)
        ):
            existing.data = stored
            existing.match = normal.match
            existing.kind = data.kind
            existing.verified = sorted(set(data.verified))
            existing.observed_at = observed
            existing.updated_at = now
            await uow.session.flush()
            await _index(uow, existing, normal.identifiers)
            customer = await customers.resolve(existing.customer_id)
            assert customer is not None
            changed = await reassemble(uow, customer, cause="source_record")
            if changed:
                await _announce_update(uow, customer, changed, "source_record")
            await uow.commit()
            return IngestResult(customer, existing, "updated")

        record = SourceRecordRow(
            id=str(uuid.uuid4()),
            source_system=data.source_system,
            source_id=data.source_id or str(uuid.uuid4()),
            kind=data.kind,
            data=stored,
            match=normal.match,
            trust=settings.source_trust.get(data.source_system, 10),
            verified=sorted(set(data.verified)),
            observed_at=observed,
            received_at=now,
            updated_at=now,
            customer_id="",
            origin_customer_id="",
        )
        decision = await _decide(uow, settings, await matcher.current(uow), record, normal.identifiers)
        if decision.target is not None:
            result = await _attach(
                uow, record, normal.identifiers, decision.target, existing=decision.target_records
            )
        else:
            result = await _create(uow, record, normal.identifiers, data)
            for candidate, outcome in decision.reviews:
                review = MatchReviewRow(
                    id=str(uuid.uuid4()),
                    customer_id=result.customer.id,
                    candidate_id=candidate,
                    source_record_id=record.id,
                    probability=outcome.probability,
                    score=outcome.score,
                    evidence=_evidence(outcome),
                    reason=decision.reason,
                    status="pending",
                    created_at=now,
                )
                uow.session.add(review)
                result.review_id = result.review_id or review.id
                result.outcome = "review"
        result.best = decision.best
        result.candidate_id = decision.best_candidate
        await uow.commit()
        return result


def _evidence(result: MatchResult) -> list[dict[str, Any]]:
    return [
        {"field": e.field, "level": e.level, "weight": round(e.weight, 3), "left": e.left, "right": e.right}
        for e in result.evidence
    ]


@dataclass
class _Decision:
    target: CustomerRow | None = None
    target_records: list[SourceRecordRow] | None = None  # the target's source records, if read
    reviews: list[tuple[str, MatchResult]] = field(default_factory=list)
    reason: str = ""
    best: MatchResult | None = None
    best_candidate: str | None = None


async def _decide(
    uow: UnitOfWork,
    settings: IdentitySettings,
    model: MatchModel,
    record: SourceRecordRow,
    identifiers: list[tuple[str, str]],
) -> _Decision:
    index = IndexRepository(uow.session)
    customers = CustomerRepository(uow.session)
    incoming = match_record(record.id, record.match)

    # Identifier values shared by many customers (a family's e-mail, a shop's phone) do not identify.
    shared = await index.owner_counts([(k, v) for k, v in identifiers if k in ("email", "phone")])
    too_common = {
        kind for (kind, _), owners in shared.items() if owners >= settings.max_customers_per_identifier
    }
    if too_common:
        incoming = _without(incoming, too_common)

    strong = [(k, v) for k, v in identifiers if k in STRONG_KINDS or k.startswith("external:")]
    strong_owners: set[str] = set()
    for kind, value in strong:
        for owner in await index.customers_with(kind, value):
            root = await customers.resolve(owner)
            if root is not None and root.erased_at is None:
                strong_owners.add(root.id)

    scored = await _score_candidates(uow, settings, model, incoming, keep=strong_owners)
    best_id, best = max(scored.items(), key=lambda kv: kv[1].probability) if scored else (None, None)
    decision = _Decision(best=best, best_candidate=best_id)

    if len(strong_owners) == 1:
        (owner_id,) = strong_owners
        owner_score = scored.get(owner_id)
        if owner_score is None or not _contradicts(owner_score):
            decision.target = await customers.get(owner_id)
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
        target = await customers.get(best_id)
        # Read (rather than counted): joining the customer reassembles it from all of them.
        existing = await SourceRecordRepository(uow.session).of_customer(best_id)
        size = len(existing)
        if len(above) > 1:
            decision.reviews = [(c, scored[c]) for c in above[:5]]
            decision.reason = "matches several customers: they may be one"
        elif size >= settings.max_records_per_customer:
            decision.reviews = [(best_id, best)]
            decision.reason = f"customer already joins {size} records"
        else:
            decision.target, decision.target_records = target, existing
        return decision
    if best.probability >= settings.review_threshold:
        ranked = sorted(scored.items(), key=lambda kv: kv[1].probability, reverse=True)
        decision.reviews = [(c, r) for c, r in ranked if r.probability >= settings.review_threshold][:3]
        decision.reason = "probable match"
    return decision


CORE_FIELDS = ("given_name", "family_name", "organisation_name", "birth_date")


def _contradicts(result: MatchResult) -> bool:
    """A strong identifier is trusted unless the names or birth dates clearly disagree."""
    return any(e.field in CORE_FIELDS and e.weight < -1.5 for e in result.evidence)


def _without(record: Any, fields: set[str]) -> Any:
    import dataclasses

    return dataclasses.replace(record, **{name: None for name in fields})


async def _score_candidates(
    uow: UnitOfWork, settings: IdentitySettings, model: MatchModel, incoming: Any, *, keep: Collection[str]
) -> dict[str, MatchResult]:
    """The best score per candidate customer: those sharing a blocking key of at most
    `block_size_cap` rows (the first `block_size_cap` × 2 by id), over at most × 4 of their records.

    Only candidates that can reach the review threshold are scored in full (`ScoreFloor`: below it a
    score changes no decision), and every one of `keep` (the owners of a strong identifier, whose
    evidence is weighed): the others are left out."""
    cap = settings.block_size_cap
    # Source records always belong to a live golden record (they move on merge and go on erasure),
    # so every candidate found here is a customer that can be matched.
    rows = await IndexRepository(uow.session).candidate_matches(
        sorted(blocking_keys(incoming)), cap=cap, customers=cap * 2, limit=cap * 4
    )
    floor = ScoreFloor(incoming, model, review_floor(settings.review_threshold))
    best: dict[str, MatchResult] = {}
    for record_id, customer_id, match in rows:
        other = match_record(record_id, orjson.loads(match))
        result = score(incoming, other, model) if customer_id in keep else floor.reaches(other)
        if result is None:
            continue
        current = best.get(customer_id)
        if current is None or result.probability > current.probability:
            best[customer_id] = result
    return best


async def _create(
    uow: UnitOfWork, record: SourceRecordRow, identifiers: list[tuple[str, str]], data: SourceRecordIn
) -> IngestResult:
    now = _now()
    customer = CustomerRow(
        id=str(uuid.uuid4()),
        kind=data.kind,
        status=data.status,
        source_system=data.source_system,
        addresses=[],
        external_ids={},
        attributes={},
        provenance={},
        created_at=now,
        updated_at=now,
    )
    CustomerRepository(uow.session).add(customer)
    record.customer_id = record.origin_customer_id = customer.id
    SourceRecordRepository(uow.session).add(record)
    await _index(uow, record, identifiers, fresh=True)
    await reassemble(uow, customer, cause="registration", records=[record])
    await uow.publish(
        CustomerRegistered(
            customer_id=customer.id,
            kind=data.kind,
            status=customer.status,
            source_system=data.source_system,
            registered_at=now,
        )
    )
    return IngestResult(customer, record, "created")


async def _attach(
    uow: UnitOfWork,
    record: SourceRecordRow,
    identifiers: list[tuple[str, str]],
    customer: CustomerRow,
    *,
    existing: list[SourceRecordRow] | None = None,
) -> IngestResult:
    """Join `record` to `customer`; `existing`: the customer's source records, if already read."""
    record.customer_id = record.origin_customer_id = customer.id
    SourceRecordRepository(uow.session).add(record)
    await _index(uow, record, identifiers, fresh=True)
    if existing is None:
        existing = await SourceRecordRepository(uow.session).of_customer(customer.id)
    changed = await reassemble(uow, customer, cause="source_record", records=[*existing, record])
    if changed:
        await _announce_update(uow, customer, changed, "source_record")
    return IngestResult(customer, record, "matched")


async def _announce_update(uow: UnitOfWork, customer: CustomerRow, changed: list[str], cause: str) -> None:
    await uow.session.flush()
    await uow.publish(
        CustomerUpdated(
            customer_id=customer.id,
            record_version=customer.version,
            changed_fields=changed,
            cause=cause,
            updated_at=customer.updated_at,
        )
    )


# -- reading --------------------------------------------------------------------------------------


async def get_customer(uow: UnitOfWork, customer_id: str) -> tuple[CustomerRow, str | None]:
    """The golden record for an id (following merges): (customer, the id asked for if it was merged)."""
    async with uow:
        row = await CustomerRepository(uow.session).resolve(customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
    if row.erased_at is not None:
        raise Gone(f"customer {customer_id} was erased", customer_id=customer_id)
    return row, (customer_id if row.id != customer_id else None)


async def _live_root(uow: UnitOfWork, customer_id: str, *, field: str | None = None) -> CustomerRow:
    row = await CustomerRepository(uow.session).resolve(customer_id)
    if row is None:
        if field is not None:
            raise InvalidInput(field, f"customer {customer_id} does not exist")
        raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
    if row.erased_at is not None:
        raise Gone(f"customer {customer_id} was erased", customer_id=customer_id)
    return row


# -- staff edits ---------------------------------------------------------------------------------


async def patch_customer(
    uow: UnitOfWork,
    settings: IdentitySettings,
    customer_id: str,
    patch: CustomerPatch,
    *,
    if_match: int | None,
    attributes: Any = None,
) -> CustomerRow:
    """A staff edit, kept as the customer's `staff` source record (the most trusted source)."""
    fields = ProfileFields.model_validate(
        patch.model_dump(exclude={"status", "verified", "reason"}, exclude_unset=True)
    )
    normal = normalise_fields(
        fields, default_region=settings.default_region, blocked=frozenset(settings.blocked_identifiers)
    )
    if attributes is not None:
        normal.display["attributes"] = attributes
    async with uow:
        customer = await _live_root(uow, customer_id)
        if if_match is not None and if_match != customer.version:
            raise PreconditionFailed(
                f"customer {customer.id} is at version {customer.version}, not {if_match}",
                current_version=customer.version,
            )
        sources = SourceRecordRepository(uow.session)
        now = _now()
        record = await sources.by_source("staff", customer.id)
        if record is None:
            record = SourceRecordRow(
                id=str(uuid.uuid4()),
                customer_id=customer.id,
                origin_customer_id=customer.id,
                source_system="staff",
                source_id=customer.id,
                kind=customer.kind,
                data={},
                match={},
                trust=settings.source_trust.get("staff", 100),
                verified=[],
                observed_at=now,
                received_at=now,
                updated_at=now,
            )
            sources.add(record)
        provided = set(patch.model_fields_set) - {"verified", "reason"}
        data = dict(record.data)
        for name in provided:
            if name == "status":
                data["status"] = patch.status
            elif name in normal.display:
                data[name] = normal.display[name]
            else:
                data.pop(name, None)  # explicitly cleared
        record.data = data
        record.match = {**record.match, **normal.match}
        record.verified = sorted(set(record.verified) | set(patch.verified))
        record.observed_at = record.updated_at = now
        await uow.session.flush()
        await _index(uow, record, normal.identifiers)
        changed = await reassemble(uow, customer, cause="edit", reason=patch.reason)
        if changed:
            await _announce_update(uow, customer, changed, "edit")
        await uow.commit()
    return customer


# -- merge, unmerge, review ----------------------------------------------------------------------


async def merge(
    uow: UnitOfWork,
    survivor_id: str,
    other_id: str,
    *,
    method: str,
    score_value: float | None = None,
    evidence: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    commit: bool = True,
) -> MergeRow:
    """Merge `other` into `survivor`: its source records move, its id resolves to the survivor."""
    customers = CustomerRepository(uow.session)
    survivor = await _live_root(uow, survivor_id)
    other = await _live_root(uow, other_id, field="body.other_id")
    if survivor.id == other.id:
        if survivor_id == other_id:
            raise InvalidInput("body.other_id", "a customer cannot be merged with itself")
        raise Conflict(f"{other_id} is already part of customer {survivor.id}", customer_id=survivor.id)
    await customers.get(survivor.id, for_update=True)
    await customers.get(other.id, for_update=True)
    other.merged_into = survivor.id
    other.updated_at = _now()
    await SourceRecordRepository(uow.session).move(from_customer=other.id, to_customer=survivor.id)
    row = MergeRow(
        id=str(uuid.uuid4()),
        survivor_id=survivor.id,
        absorbed_id=other.id,
        method=method,
        score=score_value,
        evidence=evidence or [],
        actor=_actor(),
        reason=reason,
        created_at=_now(),
    )
    lineage = LineageRepository(uow.session)
    lineage.add(row)
    for review in await lineage.pending_between(survivor.id, other.id):
        review.status, review.decided_at, review.decided_by = "merged", _now(), _actor()
    changed = await reassemble(uow, survivor, cause="merge", reason=reason)
    await uow.session.flush()
    await uow.publish(
        CustomerMerged(
            customer_id=survivor.id,
            merged_id=other.id,
            merge_id=row.id,
            method=method,  # type: ignore[arg-type]
            score=score_value,
            merged_at=row.created_at,
        )
    )
    if changed:
        await _announce_update(uow, survivor, changed, "merge")
    if commit:
        await uow.commit()
    return row


async def merge_customers(uow: UnitOfWork, survivor_id: str, other_id: str, reason: str | None) -> MergeRow:
    async with uow:
        return await merge(uow, survivor_id, other_id, method="manual", reason=reason)


async def unmerge(
    uow: UnitOfWork, customer_id: str, merge_id: str, reason: str | None
) -> tuple[CustomerRow, CustomerRow]:
    """Undo a merge: the absorbed customer (and whatever had been merged into it) stands alone again."""
    async with uow:
        lineage = LineageRepository(uow.session)
        customers = CustomerRepository(uow.session)
        row = await lineage.merge(merge_id)
        if row is None:
            raise InvalidInput("body.merge_id", f"merge {merge_id} does not exist")
        root = await _live_root(uow, customer_id)
        survivor_root = await customers.resolve(row.survivor_id)
        if survivor_root is None or survivor_root.id != root.id:
            raise InvalidInput("body.merge_id", f"merge {merge_id} is not part of customer {customer_id}")
        if row.undone_at is not None:
            raise Conflict(f"merge {merge_id} was already undone at {row.undone_at.isoformat()}")
        restored = await customers.get(row.absorbed_id, for_update=True)
        assert restored is not None
        subtree = await customers.member_ids(restored.id)
        restored.merged_into = None
        restored.updated_at = _now()
        await SourceRecordRepository(uow.session).move(
            from_customer=root.id, to_customer=restored.id, origins=subtree
        )
        row.undone_at, row.undone_by = _now(), _actor()
        changed_root = await reassemble(uow, root, cause="unmerge", reason=reason)
        changed_restored = await reassemble(uow, restored, cause="unmerge", reason=reason)
        await uow.session.flush()
        await uow.publish(
            CustomerUnmerged(
                customer_id=root.id, restored_id=restored.id, merge_id=row.id, unmerged_at=row.undone_at
            )
        )
        if changed_root:
            await _announce_update(uow, root, changed_root, "unmerge")
        if changed_restored:
            await _announce_update(uow, restored, changed_restored, "unmerge")
        await uow.commit()
        return root, restored


async def decide_review(uow: UnitOfWork, review_id: str, decision: str, reason: str | None) -> MatchReviewRow:
    async with uow:
        review = await LineageRepository(uow.session).review(review_id)
        if review is None:
            raise NotFound(f"review {review_id} does not exist")
        if review.status != "pending":
            raise Conflict(f"review {review_id} was already decided: {review.status}")
        if decision == "merge":
            customers = CustomerRepository(uow.session)
            left = await _live_root(uow, review.customer_id)
            right = await _live_root(uow, review.candidate_id)
            if left.id == right.id:
                review.status = "obsolete"
            else:
                survivor, other = sorted((left, right), key=lambda c: c.created_at)
                await merge(
                    uow,
                    survivor.id,
                    other.id,
                    method="review",
                    score_value=review.probability,
                    evidence=review.evidence,
                    reason=reason,
                    commit=False,
                )
                await customers.get(survivor.id)
                review.status = "merged"
        else:
            review.status = "kept_apart"
        review.decided_at, review.decided_by, review.decision_reason = _now(), _actor(), reason
        await uow.commit()
        return review


# -- lineage, search, audit ----------------------------------------------------------------------


async def lineage(
    uow: UnitOfWork, customer_id: str
) -> tuple[CustomerRow, list[str], list[SourceRecordRow], list[MergeRow]]:
    async with uow:
        root = await _live_root(uow, customer_id)
        members = await CustomerRepository(uow.session).member_ids(root.id)
        records = await SourceRecordRepository(uow.session).of_customer(root.id)
        merges = await LineageRepository(uow.session).merges_of(members)
    return root, members, records, merges


async def resolve_source(uow: UnitOfWork, source_system: str, source_id: str) -> tuple[SourceRecordRow, str]:
    async with uow:
        record = await SourceRecordRepository(uow.session).by_source(source_system, source_id)
        if record is None:
            raise NotFound(f"no record {source_id} from {source_system}")
        root = await CustomerRepository(uow.session).resolve(record.customer_id)
    assert root is not None
    return record, root.id


async def save_model(
    uow: UnitOfWork, model: MatchModel, origin: str, notes: str | None, trained_on: int | None = None
) -> MatchModelRow:
    async with uow:
        row = MatchModelRow(
            id=str(uuid.uuid4()),
            origin=origin,
            active=False,
            model={**model.to_json(), "trained_on": trained_on},
            notes=notes,
            created_at=_now(),
        )
        await LineageRepository(uow.session).activate_model(row)
        await uow.commit()
        return row


# -- erasure ------------------------------------------------------------------------------------


async def erase(uow: UnitOfWork, customer_id: str, reason: str | None, extra_erasers: list[Any]) -> list[str]:
    """Right to erasure: delete the customer's personal data here and tell every service to do the same."""
    from sqlalchemy import delete, update

    from services.identity.models import MatchReviewRow as Reviews
    from services.identity.models import ProfileChangeRow as Changes

    async with uow:
        root = await _live_root(uow, customer_id)
        customers = CustomerRepository(uow.session)
        members = await customers.member_ids(root.id)
        records = await SourceRecordRepository(uow.session).of_customer(root.id)
        await IndexRepository(uow.session).delete_for_records([r.id for r in records])
        for record in records:
            await uow.session.delete(record)
        now = _now()
        for row in await customers.many(members):
            for name in (
                "given_name",
                "family_name",
                "organisation_name",
                "email",
                "phone",
                "language",
                "birth_date",
                "gender",
                "national_id",
                "branch_id",
                "source_system",
            ):
                setattr(row, name, None)
            row.addresses, row.external_ids, row.attributes, row.provenance = [], {}, {}, {}
            row.erased_at = now
            row.updated_at = now
        await uow.session.execute(
            update(Changes).where(Changes.customer_id.in_(members)).values(before={}, after={})
        )
        await uow.session.execute(
            delete(Reviews).where(Reviews.customer_id.in_(members) | Reviews.candidate_id.in_(members))
        )
        await uow.session.execute(
            update(MergeRow).where(MergeRow.survivor_id.in_(members)).values(evidence=[])
        )
        for eraser in extra_erasers:
            await eraser(uow.session, members)
        uow.session.add(
            ProfileChangeRow(
                customer_id=root.id,
                actor=_actor(),
                cause="erasure",
                reason=reason,
                before={},
                after={},
                changed_at=now,
            )
        )
        await uow.publish(CustomerErased(customer_id=root.id, erased_ids=members, erased_at=now))
        await uow.commit()
    return members


# -- views for the review queue, audit and export ----------------------------------------------


async def _review_view(uow: UnitOfWork, review: MatchReviewRow) -> Any:
    from services.identity.schemas import CustomerOut, ReviewOut

    customers = CustomerRepository(uow.session)
    left = await customers.resolve(review.customer_id)
    right = await customers.resolve(review.candidate_id)

    def out(row: CustomerRow | None) -> CustomerOut | None:
        return CustomerOut.model_validate(row) if row is not None and row.erased_at is None else None

    return ReviewOut(
        id=review.id,
        status=review.status,
        probability=review.probability,
        reason=review.reason,
        evidence=review.evidence,
        created_at=review.created_at,
        decided_at=review.decided_at,
        decided_by=review.decided_by,
        left=out(left),
        right=out(right),
    )


async def reviews_out(
    uow: UnitOfWork, status: str | None, limit: int, offset: int, branch: str | None = None
) -> list[Any]:
    async with uow:
        rows = await LineageRepository(uow.session).reviews(
            status=status, limit=limit, offset=offset, branch=branch
        )
        return [await _review_view(uow, r) for r in rows]


async def review_out(uow: UnitOfWork, review_id: str) -> Any:
    async with uow:
        row = await LineageRepository(uow.session).review(review_id)
        if row is None:
            raise NotFound(f"review {review_id} does not exist")
        return await _review_view(uow, row)


async def changes(uow: UnitOfWork, customer_id: str, limit: int) -> list[ProfileChangeRow]:
    async with uow:
        root = await _live_root(uow, customer_id)
        members = await CustomerRepository(uow.session).member_ids(root.id)
        return await LineageRepository(uow.session).changes(members, limit=limit)


async def export(uow: UnitOfWork, customer_id: str, exporters: dict[str, Any]) -> dict[str, Any]:
    """Everything identity holds on a customer, as JSON (right of access)."""
    from services.identity.schemas import CustomerOut, MergeOut, SourceRecordOut

    async with uow:
        root = await _live_root(uow, customer_id)
        members = await CustomerRepository(uow.session).member_ids(root.id)
        records = await SourceRecordRepository(uow.session).of_customer(root.id)
        merges = await LineageRepository(uow.session).merges_of(members)
        audit = await LineageRepository(uow.session).changes(members, limit=10_000)
        extra = {name: await exporter(uow.session, members) for name, exporter in exporters.items()}
    return {
        "customer": CustomerOut.model_validate(root).model_dump(mode="json"),
        "member_ids": members,
        "source_records": [
            SourceRecordOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in records
        ],
        "merges": [MergeOut.model_validate(m, from_attributes=True).model_dump(mode="json") for m in merges],
        "changes": [
            {
                "actor": c.actor,
                "cause": c.cause,
                "reason": c.reason,
                "before": c.before,
                "after": c.after,
                "changed_at": c.changed_at.isoformat(),
            }
            for c in audit
        ],
        **extra,
        "exported_at": _now().isoformat(),
    }

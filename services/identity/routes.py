"""Identity's HTTP routes (thin: parse, call a use case, shape the answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from services.identity import service
from services.identity.schemas import (
    ChangeOut,
    CustomerCreate,
    CustomerOut,
    CustomerPatch,
    FieldEvidenceOut,
    IngestOut,
    LineageOut,
    MatchOut,
    MergeOut,
    MergeRequest,
    ResolvedRecordOut,
    ReviewDecision,
    ReviewOut,
    SearchPage,
    SourceRecordIn,
    SourceRecordOut,
    UnmergeRequest,
)
from services.identity.search import SearchQuery, search
from services.identity.settings import IdentitySettings
from shared.auth.guard import ListBranch
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["customers"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such customer"},
    410: {"model": Problem, "description": "Erased"},
}


async def get_settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.runtime.settings
    return settings


async def get_matcher(request: Request) -> service.Matcher:
    matcher: service.Matcher = request.app.state.matcher
    return matcher


SettingsDep = Annotated[IdentitySettings, Depends(get_settings)]
MatcherDep = Annotated[service.Matcher, Depends(get_matcher)]


def customer_out(row: Any, resolved_from: str | None = None) -> CustomerOut:
    out = CustomerOut.model_validate(row)
    out.resolved_from = resolved_from
    return out


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise InvalidInput("header.If-Match", 'give the ETag from a read, e.g. "3"') from exc


async def _attributes(
    request: Request, uow_factory: Any, values: dict[str, Any] | None, *, partial: bool
) -> Any:
    validator = getattr(request.app.state, "validate_attributes", None)
    if values is None or validator is None:
        return values
    return await validator(values, partial=partial)


async def _ingest(
    body: SourceRecordIn,
    uow: Any,
    settings: IdentitySettings,
    matcher: service.Matcher,
    request: Request,
    response: Response,
) -> IngestOut:
    attributes = await _attributes(request, uow, body.attributes, partial=False)
    result = await service.ingest(uow, settings, matcher, body, attributes=attributes)
    response.status_code = (
        status.HTTP_201_CREATED if result.outcome in ("created", "review") else status.HTTP_200_OK
    )
    response.headers["Location"] = f"/customers/{result.customer.id}"
    response.headers["ETag"] = f'"{result.customer.version}"'
    best = result.best
    return IngestOut(
        customer=customer_out(result.customer),
        source_record_id=result.record.id,
        match=MatchOut(
            outcome=result.outcome,  # type: ignore[arg-type]
            probability=round(best.probability, 6) if best else None,
            candidate_id=result.candidate_id,
            review_id=result.review_id,
            evidence=[FieldEvidenceOut(**e) for e in service._evidence(best)] if best else [],
        ),
    )


INGEST_DOC = (
    "Matches the record against every customer: deterministic rules on strong identifiers, then "
    "probabilistic scoring. `match.outcome` says what happened: `created` (201, a new customer), "
    "`matched` (200, joined an existing customer), `updated` (200, the same source record again), "
    "`review` (201, a new customer, and a probable duplicate queued for review). Publishes "
    "`customer_registered` or `customer_updated`."
)


@router.post(
    "/customers",
    response_model=IngestOut,
    status_code=201,
    summary="Register a customer",
    description=INGEST_DOC,
    responses={**PROBLEM_RESPONSES, 200: {"model": IngestOut}},
)
async def create_customer(
    body: CustomerCreate,
    uow: UowDep,
    settings: SettingsDep,
    matcher: MatcherDep,
    request: Request,
    response: Response,
) -> IngestOut:
    return await _ingest(body, uow, settings, matcher, request, response)


@router.post(
    "/records",
    response_model=IngestOut,
    status_code=201,
    tags=["matching"],
    summary="Ingest a source record (form, store, import, partner)",
    description=INGEST_DOC,
    responses={**PROBLEM_RESPONSES, 200: {"model": IngestOut}},
)
async def ingest_record(
    body: SourceRecordIn,
    uow: UowDep,
    settings: SettingsDep,
    matcher: MatcherDep,
    request: Request,
    response: Response,
) -> IngestOut:
    return await _ingest(body, uow, settings, matcher, request, response)


@router.get(
    "/records/{source_system}/{source_id}",
    response_model=ResolvedRecordOut,
    tags=["matching"],
    summary="Which golden customer a source record is part of",
    responses={404: {"model": Problem, "description": "Unknown record"}},
)
async def resolve_record(source_system: str, source_id: str, uow: UowDep) -> ResolvedRecordOut:
    record, customer_id = await service.resolve_source(uow, source_system, source_id)
    return ResolvedRecordOut(
        source_system=record.source_system,
        source_id=record.source_id,
        source_record_id=record.id,
        customer_id=customer_id,
    )


@router.get(
    "/customers",
    response_model=SearchPage,
    summary="Search customers",
    description="By name (fuzzy, `q`), e-mail, phone, card number or external id (`system:id`); "
    "criteria combine. Paginated with `cursor`.",
    responses=PROBLEM_RESPONSES,
)
async def search_customers(
    uow: UowDep,
    branch: ListBranch,
    q: Annotated[str | None, Query(max_length=200, examples=["ana garcia"])] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    card: Annotated[str | None, Query(max_length=64)] = None,
    external_id: Annotated[str | None, Query(max_length=200, examples=["shopify:7712"])] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> SearchPage:
    query = SearchQuery(q, email, phone, card, external_id, limit, cursor, branch=branch)
    rows, next_cursor = await search(uow, query)
    return SearchPage(items=[customer_out(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="Read a customer",
    description="A merged id resolves to the surviving customer (`resolved_from` says so).",
    responses=NOT_FOUND,
)
async def read_customer(customer_id: str, uow: UowDep, response: Response) -> CustomerOut:
    row, resolved_from = await service.get_customer(uow, customer_id)
    response.headers["ETag"] = f'"{row.version}"'
    return customer_out(row, resolved_from)


@router.patch(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="Edit a customer",
    description="Staff edit, kept as the most trusted source. Send `If-Match` with the ETag of "
    "your read: a stale version is refused with 412.",
    responses={**PROBLEM_RESPONSES, **NOT_FOUND, 412: {"model": Problem, "description": "Stale version"}},
)
async def patch_customer(
    customer_id: str,
    body: CustomerPatch,
    uow: UowDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> CustomerOut:
    attributes = await _attributes(request, uow, body.attributes, partial=True)
    row = await service.patch_customer(
        uow, settings, customer_id, body, if_match=_if_match(if_match), attributes=attributes
    )
    response.headers["ETag"] = f'"{row.version}"'
    return customer_out(row)


@router.get(
    "/customers/{customer_id}/records",
    response_model=LineageOut,
    tags=["matching"],
    summary="Lineage: the source records a golden record is built from, and why",
    responses=NOT_FOUND,
)
async def customer_lineage(customer_id: str, uow: UowDep) -> LineageOut:
    root, members, records, merges = await service.lineage(uow, customer_id)
    return LineageOut(
        customer_id=root.id,
        member_ids=members,
        provenance=root.provenance,
        records=[SourceRecordOut.model_validate(r, from_attributes=True) for r in records],
        merges=[MergeOut.model_validate(m, from_attributes=True) for m in merges],
    )


@router.post(
    "/customers/{customer_id}/merge",
    response_model=MergeOut,
    tags=["matching"],
    summary="Merge another customer into this one",
    description="Publishes `customer_merged`; the other id then resolves to this customer.",
    responses={**PROBLEM_RESPONSES, **NOT_FOUND, 409: {"model": Problem}},
)
async def merge_customer(customer_id: str, body: MergeRequest, uow: UowDep) -> MergeOut:
    row = await service.merge_customers(uow, customer_id, body.other_id, body.reason)
    return MergeOut.model_validate(row, from_attributes=True)


@router.post(
    "/customers/{customer_id}/unmerge",
    response_model=list[CustomerOut],
    tags=["matching"],
    summary="Undo a merge",
    description="Restores the absorbed customer with its own source records; publishes `customer_unmerged`.",
    responses={**PROBLEM_RESPONSES, **NOT_FOUND, 409: {"model": Problem}},
)
async def unmerge_customer(customer_id: str, body: UnmergeRequest, uow: UowDep) -> list[CustomerOut]:
    root, restored = await service.unmerge(uow, customer_id, body.merge_id, body.reason)
    return [customer_out(root), customer_out(restored)]


@router.get(
    "/match-reviews",
    response_model=list[ReviewOut],
    tags=["matching"],
    summary="The review queue: probable duplicates, most likely first",
)
async def list_reviews(
    uow: UowDep,
    branch: ListBranch,
    status_filter: Annotated[
        str | None, Query(alias="status", pattern="^(pending|merged|kept_apart|obsolete)$")
    ] = "pending",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> list[ReviewOut]:
    return await service.reviews_out(uow, status_filter, limit, offset, branch)


@router.get(
    "/match-reviews/{review_id}",
    response_model=ReviewOut,
    tags=["matching"],
    summary="One review: both customers side by side with the per-field evidence",
    responses={404: {"model": Problem}},
)
async def read_review(review_id: str, uow: UowDep) -> ReviewOut:
    review: ReviewOut = await service.review_out(uow, review_id)
    return review


@router.post(
    "/match-reviews/{review_id}/decision",
    response_model=ReviewOut,
    tags=["matching"],
    summary="Decide a review: merge, or keep apart",
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem}, 409: {"model": Problem}},
)
async def decide_review(review_id: str, body: ReviewDecision, uow: UowDep, request: Request) -> ReviewOut:
    await service.decide_review(uow, review_id, body.decision, body.reason)
    review: ReviewOut = await service.review_out(request.app.state.runtime.uow(), review_id)
    return review


@router.get(
    "/customers/{customer_id}/changes",
    response_model=list[ChangeOut],
    tags=["privacy"],
    summary="Audit trail: every change to the profile (who, when, before/after)",
    responses=NOT_FOUND,
)
async def customer_changes(
    customer_id: str, uow: UowDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[ChangeOut]:
    return [
        ChangeOut.model_validate(c, from_attributes=True)
        for c in await service.changes(uow, customer_id, limit)
    ]


@router.delete(
    "/customers/{customer_id}",
    status_code=204,
    tags=["privacy"],
    summary="Erase a customer",
    description="Right to erasure: deletes the personal data here and publishes `customer_erased`, "
    "on which every service deletes or anonymises its copy.",
    responses=NOT_FOUND,
)
async def erase_customer(
    customer_id: str,
    uow: UowDep,
    request: Request,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    await service.erase(uow, customer_id, reason, getattr(request.app.state, "erasers", []))
    return Response(status_code=204)


@router.get(
    "/customers/{customer_id}/export",
    tags=["privacy"],
    summary="Right of access: identity's data",
    responses=NOT_FOUND,
)
async def export_customer(customer_id: str, uow: UowDep, request: Request) -> dict[str, Any]:
    return await service.export(uow, customer_id, getattr(request.app.state, "exporters", {}))

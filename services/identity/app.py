"""Identity's composition root. `app` is what `uvicorn services.identity.app:app` serves alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.identity import routes
from services.identity.attributes import routes as attribute_routes
from services.identity.attributes import service as attributes
from services.identity.consents import routes as consent_routes
from services.identity.consents import service as consents
from services.identity.households import routes as household_routes
from services.identity.households import service as households
from services.identity.models import MESSAGING, metadata
from services.identity.notes import routes as note_routes
from services.identity.notes import service as notes
from services.identity.service import Matcher
from services.identity.settings import IdentitySettings, load_settings
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: IdentitySettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM identity service",
        description=(
            "Customer profiles and golden records: every source record matched (deterministic rules, then "
            "Fellegi–Sunter scoring), merged with survivorship rules and lineage, reviewable and reversible; "
            "consents, erasure and the audit trail."
        ),
    )
    runtime.app.state.matcher = Matcher()
    runtime.include_router(routes.router)
    runtime.include_router(consent_routes.router)
    runtime.include_router(attribute_routes.router)
    runtime.include_router(household_routes.router)
    runtime.include_router(note_routes.router)
    extras = {"consents": consents, "attributes": attributes, "households": households, "notes": notes}
    runtime.app.state.exporters = {name: package.export_customer_data for name, package in extras.items()}
    runtime.app.state.erasers = [package.erase_customer_data for package in extras.values()]
    runtime.app.state.validate_attributes = _attribute_validator(runtime)
    runtime.auth.customer_guard = _branch_guard(runtime)
    runtime.auth.object_guard = _object_guard(runtime, runtime.auth.customer_guard)
    if settings.auto_train:
        from services.identity.batch import auto_train

        runtime.add_background(lambda: auto_train(runtime))
    runtime.subscribe()
    return runtime


def _branch_guard(runtime: ServiceRuntime) -> Any:
    """Staff limited to a branch (`branch` claim) see only that branch's customers: identity checks its
    own records (the gateway checks too, before proxying). Unknown ids are left to the route (404)."""
    from sqlalchemy import select

    from services.identity.models import CustomerRow
    from shared.auth.tokens import Principal
    from shared.errors import Forbidden

    async def guard(principal: Principal, customer_id: str) -> None:
        async with runtime.sessions() as session:
            current = customer_id
            for _ in range(32):  # a merged id belongs to its survivor's branch
                row = (
                    await session.execute(
                        select(CustomerRow.branch_id, CustomerRow.merged_into).where(
                            CustomerRow.id == current
                        )
                    )
                ).first()
                if row is None or row.merged_into is None:
                    break
                current = row.merged_into
        if row is not None and row.branch_id != principal.branch:
            raise Forbidden("this customer belongs to another branch")

    return guard


def _object_guard(runtime: ServiceRuntime, customer_guard: Any) -> Any:
    """Branch-limited staff and identity's own objects (`policy.OWNERS["identity"]`: match reviews,
    source records, households), checked in its own database like the gateway checks them (defence
    in depth). Fails closed: an object with no customer is refused."""
    from sqlalchemy import select

    from services.identity.households.models import HouseholdMemberRow
    from services.identity.models import MatchReviewRow, SourceRecordRow
    from shared.auth import policy
    from shared.auth.tokens import Principal
    from shared.errors import Forbidden

    owners = policy.OWNERS["identity"]

    async def guard(principal: Principal, owner: policy.Owner, params: Any) -> None:
        customers: list[str] = []
        async with runtime.sessions() as session:
            if owner is owners["review_id"]:
                review = await session.get(MatchReviewRow, str(params["review_id"]))
                customers = [review.customer_id, review.candidate_id] if review is not None else []
            elif owner is owners["source_id"]:
                found = await session.scalars(
                    select(SourceRecordRow.customer_id).where(
                        SourceRecordRow.source_system == str(params["source_system"]),
                        SourceRecordRow.source_id == str(params["source_id"]),
                    )
                )
                customers = list(found)
            elif owner is owners["household_id"]:
                found = await session.scalars(
                    select(HouseholdMemberRow.customer_id).where(
                        HouseholdMemberRow.household_id == str(params["household_id"])
                    )
                )
                customers = list(found)
        if not customers:
            raise Forbidden("this object's branch cannot be checked (no such object?)")
        for customer_id in dict.fromkeys(customers):
            await customer_guard(principal, customer_id)

    return guard


def _attribute_validator(runtime: ServiceRuntime) -> Any:
    """Profile attributes are checked against the configurable attribute schema."""
    from services.identity.attributes.domain import validate_attributes
    from services.identity.attributes.service import load_definitions

    async def validate(values: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        async with runtime.uow() as uow:
            definitions = await load_definitions(uow.session)
        return validate_attributes(definitions, values, partial=partial)

    return validate


def create_app() -> object:
    """Factory for `uvicorn --factory services.identity.app:create_app`."""
    return build().app

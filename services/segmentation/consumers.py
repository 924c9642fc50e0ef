"""Events segmentation listens to: customers' lifecycle (registered, merged, unmerged, erased),
purchases and refunds, contacts, complaints and surveys, loyalty memberships, tiers, referrals and
points — each stored once as a fact, then the customer's features recomputed from them."""

from __future__ import annotations

from services.segmentation import service
from shared.contracts.identity import (
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
)
from shared.contracts.interactions import (
    ComplaintOpened,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
    InteractionRecorded,
    PurchaseRecorded,
    PurchaseRefunded,
    SurveyAnswered,
)
from shared.contracts.loyalty import (
    MemberEnrolled,
    PointsEarned,
    PointsRedeemed,
    ReferralCompleted,
    TierChanged,
)
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(CustomerRegistered)
    async def customer_registered(uow: UnitOfWork, event: CustomerRegistered, _envelope: CloudEvent) -> None:
        await service.on_customer_registered(uow, event)

    @consumer.on(CustomerMerged)
    async def customer_merged(uow: UnitOfWork, event: CustomerMerged, _envelope: CloudEvent) -> None:
        await service.on_customer_merged(uow, event)

    @consumer.on(CustomerUnmerged)
    async def customer_unmerged(uow: UnitOfWork, event: CustomerUnmerged, _envelope: CloudEvent) -> None:
        await service.on_customer_unmerged(uow, event)

    @consumer.on(CustomerErased)
    async def customer_erased(uow: UnitOfWork, event: CustomerErased, _envelope: CloudEvent) -> None:
        await service.on_customer_erased(uow, event)

    @consumer.on(PurchaseRecorded)
    async def purchase_recorded(uow: UnitOfWork, event: PurchaseRecorded, _envelope: CloudEvent) -> None:
        await service.on_purchase_recorded(uow, event)

    @consumer.on_many(PurchaseRecorded)
    async def purchases_recorded(
        uow: UnitOfWork, events: list[PurchaseRecorded], _envelopes: list[CloudEvent]
    ) -> None:
        await service.on_purchases_recorded(uow, events)

    @consumer.on(PurchaseRefunded)
    async def purchase_refunded(uow: UnitOfWork, event: PurchaseRefunded, _envelope: CloudEvent) -> None:
        await service.on_purchase_refunded(uow, event)

    @consumer.on(InteractionRecorded)
    async def interaction_recorded(
        uow: UnitOfWork, event: InteractionRecorded, _envelope: CloudEvent
    ) -> None:
        await service.on_interaction_recorded(uow, event)

    @consumer.on(ComplaintOpened)
    async def complaint_opened(uow: UnitOfWork, event: ComplaintOpened, _envelope: CloudEvent) -> None:
        await service.on_complaint_opened(uow, event)

    @consumer.on(ComplaintStatusChanged)
    async def complaint_status_changed(
        uow: UnitOfWork, event: ComplaintStatusChanged, _envelope: CloudEvent
    ) -> None:
        await service.on_complaint_status_changed(uow, event)

    @consumer.on(ComplaintSlaBreached)
    async def complaint_sla_breached(
        uow: UnitOfWork, event: ComplaintSlaBreached, envelope: CloudEvent
    ) -> None:
        await service.on_complaint_sla_breached(uow, event, envelope.id)

    @consumer.on(SurveyAnswered)
    async def survey_answered(uow: UnitOfWork, event: SurveyAnswered, _envelope: CloudEvent) -> None:
        await service.on_survey_answered(uow, event)

    @consumer.on(MemberEnrolled)
    async def member_enrolled(uow: UnitOfWork, event: MemberEnrolled, _envelope: CloudEvent) -> None:
        await service.on_member_enrolled(uow, event)

    @consumer.on(TierChanged)
    async def tier_changed(uow: UnitOfWork, event: TierChanged, _envelope: CloudEvent) -> None:
        await service.on_tier_changed(uow, event)

    @consumer.on(ReferralCompleted)
    async def referral_completed(uow: UnitOfWork, event: ReferralCompleted, _envelope: CloudEvent) -> None:
        await service.on_referral_completed(uow, event)

    @consumer.on(PointsEarned)
    async def points_earned(uow: UnitOfWork, event: PointsEarned, _envelope: CloudEvent) -> None:
        await service.on_points(uow, event)

    @consumer.on(PointsRedeemed)
    async def points_redeemed(uow: UnitOfWork, event: PointsRedeemed, _envelope: CloudEvent) -> None:
        await service.on_points(uow, event)

    @consumer.on_many(PointsEarned)
    async def points_earned_many(
        uow: UnitOfWork, events: list[PointsEarned], _envelopes: list[CloudEvent]
    ) -> None:
        await service.on_points_many(uow, events)

    @consumer.on_many(PointsRedeemed)
    async def points_redeemed_many(
        uow: UnitOfWork, events: list[PointsRedeemed], _envelopes: list[CloudEvent]
    ) -> None:
        await service.on_points_many(uow, events)

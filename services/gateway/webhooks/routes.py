"""The webhook API: subscriptions, their delivery log, and the event types one can subscribe to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from services.gateway.webhooks.catalogue import event_types
from services.gateway.webhooks.hub import WebhookHub
from services.gateway.webhooks.schemas import (
    DeliveryList,
    EventTypeList,
    EventTypeOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from shared.errors import PROBLEM_JSON, Problem, ServiceUnavailable

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

PROBLEM: dict[str, Any] = {"model": Problem, "content": {PROBLEM_JSON: {}}}
Responses = dict[int | str, dict[str, Any]]
UNAVAILABLE: Responses = {503: {**PROBLEM, "description": "Webhooks are not configured on this gateway"}}
NOT_FOUND: Responses = {404: {**PROBLEM, "description": "No such subscription"}}
INVALID: Responses = {
    422: {**PROBLEM, "description": "Invalid input: the field at fault is named (RFC 9457)"}
}


def hub(request: Request) -> WebhookHub:
    found: WebhookHub | None = request.app.state.webhooks
    if found is None:
        raise ServiceUnavailable(
            "webhooks are not configured on this gateway (set CRM_GATEWAY_DATABASE_URL)", service="gateway"
        )
    return found


@router.get(
    "/event-types",
    response_model=EventTypeList,
    summary="The event types a webhook can subscribe to",
    description="Every event the platform publishes (the same catalogue as /asyncapi.json).",
)
async def list_event_types() -> EventTypeList:
    return EventTypeList(
        items=[
            EventTypeOut(
                type=full_type,
                topic=cls.topic.name,
                summary=((cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ") or full_type),
            )
            for full_type, cls in event_types().items()
        ]
    )


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    summary="Subscribe a URL to events",
    description=(
        "Events of the chosen types are POSTed to `url` as CloudEvents JSON "
        "(`content-type: application/cloudevents+json`), with headers `X-CRM-Event-Id` (deduplicate on "
        "it: a delivery may come twice), `X-CRM-Event-Type`, `X-CRM-Delivery-Id`, `X-CRM-Attempt` and "
        '`X-CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the secret>`. '
        "Answer 2xx within the timeout; anything else is retried with exponential backoff until the "
        "attempts run out (the delivery is then `failed`). The `secret` is shown only in this answer."
    ),
    responses={**INVALID, **UNAVAILABLE},
)
async def create_subscription(body: SubscriptionIn, request: Request) -> SubscriptionCreated:
    return await hub(request).create(body)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    summary="List webhook subscriptions",
    description="Oldest first. Secrets are never listed.",
    responses=UNAVAILABLE,
)
async def list_subscriptions(request: Request) -> SubscriptionList:
    return SubscriptionList(items=await hub(request).all())


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Read a webhook subscription",
    responses={**NOT_FOUND, **UNAVAILABLE},
)
async def read_subscription(subscription_id: str, request: Request) -> SubscriptionOut:
    return await hub(request).get(subscription_id)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook subscription",
    description="No further events are delivered; pending deliveries are cancelled. The log remains.",
    responses={**NOT_FOUND, **UNAVAILABLE},
)
async def delete_subscription(subscription_id: str, request: Request) -> Response:
    await hub(request).delete(subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryList,
    summary="The delivery log of a subscription",
    description=(
        "Newest first: each delivery's status and every attempt (time, HTTP status, error, duration)."
    ),
    responses={**NOT_FOUND, **INVALID, **UNAVAILABLE},
)
async def list_deliveries(
    subscription_id: str,
    request: Request,
    delivery_status: Annotated[
        str | None, Query(alias="status", pattern="^(pending|delivered|failed|cancelled)$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    return DeliveryList(
        items=await hub(request).deliveries(subscription_id, status=delivery_status, limit=limit)
    )

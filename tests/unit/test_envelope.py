"""The CloudEvents envelope, the payload registry and the Kafka binary binding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest

from shared.context import request_id_var
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.contracts.loyalty import PointsEarned
from shared.events.envelope import CloudEvent, EventPayload, Topic, event_class, new_event, registered_topics
from shared.events.kafka_binding import MalformedEvent, from_kafka, to_kafka


def purchase() -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id="p1",
        customer_id="c1",
        channel="store",
        occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
        currency="EUR",
        total_minor=1234,
        lines=[PurchaseLine(sku="A", quantity=1, unit_price_minor=1234)],
    )


class TestNewEvent:
    def test_type_carries_a_version_suffix_and_subject_is_the_customer(self) -> None:
        event = new_event(purchase(), source="/crm/interactions")
        assert event.type == "crm.interactions.purchase_recorded.v1"
        assert event.subject == "c1"
        assert event.specversion == "1.0"
        assert event.dataschema == "/api/catalog/events/crm.interactions.purchase_recorded.v1"
        assert event.data["total_minor"] == 1234

    def test_request_id_of_the_current_request_is_carried(self) -> None:
        token = request_id_var.set("req-42")
        try:
            assert new_event(purchase(), source="/x").requestid == "req-42"
        finally:
            request_id_var.reset(token)

    def test_each_event_gets_its_own_id(self) -> None:
        assert new_event(purchase(), source="/x").id != new_event(purchase(), source="/x").id

    def test_a_trusted_envelope_is_the_validated_one(self) -> None:
        """`trusted=True` skips validation (bulk paths): the envelope must be the same, attribute for
        attribute, as the validated one, also for a payload made without validation."""
        at = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
        token = request_id_var.set("req-7")
        try:
            for payload in (purchase(), PurchaseRecorded.model_construct(**dict(purchase()))):
                checked = new_event(payload, source="/x", time=at, event_id="e-1")
                trusted = new_event(payload, source="/x", time=at, event_id="e-1", trusted=True)
                assert trusted.model_dump(mode="json") == checked.model_dump(mode="json")
                assert trusted.id == "e-1"
                assert trusted.requestid == "req-7"
        finally:
            request_id_var.reset(token)

    def test_payload_round_trips_through_the_registry(self) -> None:
        event = new_event(purchase(), source="/x")
        assert event_class(event.type) is PurchaseRecorded
        assert event.typed() == purchase()


class TestRegistry:
    def test_topics_of_published_events_are_registered(self) -> None:
        assert {"crm.interactions.purchases", "crm.loyalty.points", "crm.identity.customers"} <= set(
            registered_topics()
        )

    def test_two_classes_cannot_claim_one_event_type(self) -> None:
        with pytest.raises(ValueError, match="declared twice"):

            class Impostor(EventPayload):
                event_type: ClassVar[str] = PointsEarned.event_type
                topic: ClassVar[Topic] = PointsEarned.topic
                customer_id: str


class TestKafkaBinding:
    def test_binary_mode_round_trip(self) -> None:
        event = new_event(purchase(), source="/crm/interactions")
        key, value, headers = to_kafka(event)
        assert key == b"c1"
        names = dict(headers)
        assert names["ce_type"] == b"crm.interactions.purchase_recorded.v1"
        assert names["ce_specversion"] == b"1.0"
        assert names["content-type"] == b"application/json"
        assert from_kafka(value, headers) == event

    def test_missing_attributes_are_malformed(self) -> None:
        with pytest.raises(MalformedEvent, match="ce_id"):
            from_kafka(b"{}", [("ce_specversion", b"1.0"), ("ce_source", b"/x"), ("ce_type", b"t")])

    def test_non_json_value_is_malformed(self) -> None:
        event = new_event(purchase(), source="/x")
        _, _, headers = to_kafka(event)
        with pytest.raises(MalformedEvent, match="not JSON"):
            from_kafka(b"{not json", headers)

    def test_json_that_is_not_an_object_is_malformed(self) -> None:
        _, _, headers = to_kafka(new_event(purchase(), source="/x"))
        with pytest.raises(MalformedEvent, match="object"):
            from_kafka(b"[1, 2]", headers)

    def test_unknown_type_cannot_be_typed(self) -> None:
        event = CloudEvent(source="/x", type="crm.nobody.nothing.v1")
        with pytest.raises(LookupError):
            event.typed()

"""Events: the CloudEvents 1.0 envelope, typed payloads, topics and the Kafka binary binding."""

from shared.events.envelope import CloudEvent, EventPayload, Topic, event_class, new_event, registered_events

__all__ = ["CloudEvent", "EventPayload", "Topic", "event_class", "new_event", "registered_events"]

"""The published event contract of every service: topics and payload schemas.

These modules are the single source of the AsyncAPI document and of the JSON schemas served at
each event's `dataschema`. Producers publish these classes; consumers decode into them. Events
carry customer ids and business facts, not personal data, so that an erased customer's details do
not live on in Kafka's logs.
"""

from shared.contracts import identity, interactions, loyalty

__all__ = ["identity", "interactions", "loyalty"]

"""Webhooks: events delivered to HTTPS endpoints of systems that cannot read Kafka."""

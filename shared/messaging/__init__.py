"""Reliable messaging: transactional outbox, idempotent inbox, event bus backends, dead letters."""

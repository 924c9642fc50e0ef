"""Alembic environment of the gateway's own database (webhook subscriptions and deliveries)."""

from services.gateway.webhooks.models import metadata
from shared.migrations import run_env

run_env(metadata)

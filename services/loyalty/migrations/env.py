"""Alembic environment of the loyalty service."""

from services.loyalty.models import metadata
from shared.migrations import run_env

run_env(metadata)

"""Alembic environment of the interactions service."""

from services.interactions.models import metadata
from shared.migrations import run_env

run_env(metadata)

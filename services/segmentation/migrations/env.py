"""Alembic environment of the segmentation service."""

from services.segmentation.models import metadata
from shared.migrations import run_env

run_env(metadata)

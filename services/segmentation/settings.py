"""Segmentation service settings (`CRM_SEGMENTATION_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class SegmentationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SEGMENTATION_", extra="ignore", env_file=".env")

    service_name: str = "segmentation"


def load_settings(**overrides: object) -> SegmentationSettings:
    return load_service_settings(SegmentationSettings, **overrides)

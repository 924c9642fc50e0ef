"""The gateway's authentication tables (on the gateway database's metadata, next to webhooks)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Table, Text

from services.gateway.webhooks.models import metadata
from shared.db import UTCDateTime
from shared.messaging.tables import BigIntPK

users = Table(
    "auth_users",
    metadata,
    Column("username", String(100), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("branch", String(64), nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_login_at", UTCDateTime(), nullable=True),
)

clients = Table(
    "auth_clients",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("secret_hash", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("scopes", JSON, nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "auth_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("scopes", JSON, nullable=True),
    Column("created_by", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
)

member_credentials = Table(
    "auth_member_credentials",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("customer_id", String(36), nullable=False, index=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_login_at", UTCDateTime(), nullable=True),
)

refresh_tokens = Table(
    "auth_refresh_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("family_id", String(32), nullable=False, index=True),
    Column("subject_kind", String(20), nullable=False),
    Column("subject", String(320), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

signing_keys = Table(
    "auth_signing_keys",
    metadata,
    Column("kid", String(32), primary_key=True),
    Column("algorithm", String(20), nullable=False),
    Column("private_key", Text, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime(), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor_kind", String(20), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("roles", String(200), nullable=False),
    Column("method", String(10), nullable=False),
    Column("route", String(300), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("customer_id", String(36), nullable=True),
    Column("status", Integer, nullable=False),
    Column("purpose", String(200), nullable=True),
    Column("request_id", String(128), nullable=True),
    Index("ix_audit_log_customer_id_at", "customer_id", "at"),
    Index("ix_audit_log_actor_at", "actor", "at"),
)

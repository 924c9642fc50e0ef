"""Tables: surveys."""

from __future__ import annotations

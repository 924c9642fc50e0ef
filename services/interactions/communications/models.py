"""Tables: communications."""

from __future__ import annotations

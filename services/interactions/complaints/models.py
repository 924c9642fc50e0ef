"""Tables: complaints."""

from __future__ import annotations

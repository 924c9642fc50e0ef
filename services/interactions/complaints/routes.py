"""HTTP routes: complaints."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["complaints"])

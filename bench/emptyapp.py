"""The raw limit of the web stack: a FastAPI app whose endpoints do nothing, served by uvicorn exactly as
a service is (`python -m uvicorn bench.emptyapp:app`). The end-to-end benchmark sends it the same load
as the platform, so the report shows how close a real endpoint gets to an empty one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.get("/empty")
async def empty_get() -> dict[str, str]:
    return {"id": "empty"}


@app.post("/empty", status_code=201)
async def empty_post(body: dict[str, Any]) -> dict[str, str]:
    return {"id": "empty"}

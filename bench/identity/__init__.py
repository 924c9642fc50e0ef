"""Identity matching benchmark: our identity service against Splink on a labelled, generated data set.

    .venv/bin/python -m bench.identity --size small --out bench/out

`run(size, out_dir, database_url)` does the same from code (`make bench`) and returns the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(size: str, out_dir: Path, database_url: str | None = None, **options: Any) -> dict[str, Any]:
    """Generate, resolve with ours and Splink, score; write identity.json and identity.md in `out_dir`."""
    from bench.identity.runner import run as _run

    return _run(size, out_dir, database_url, **options)


__all__ = ["run"]

"""`python -m bench.identity --size small|medium|full --out bench/out [--database-url …]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.identity.runner import SIZES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__)
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="small", help="small ≈ 2k, medium ≈ 20k, full ≈ 100k records"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/out"), help="folder for identity.json and identity.md"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_IDENTITY_DATABASE_URL"),
        help="an EMPTY PostgreSQL database (postgresql+asyncpg://…); default a temporary SQLite file",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES"),
        help="a PostgreSQL server (postgresql+asyncpg://user:pw@host:port/postgres): fresh databases "
        "are created there for the one-by-one run and the import, and dropped afterwards",
    )
    parser.add_argument("--no-batch", action="store_true", help="skip the batch (import) resolution")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--records", type=int, default=None, help="override the number of records of --size")
    parser.add_argument("--no-splink", action="store_true", help="only our identity service")
    parser.add_argument("--no-ours", action="store_true", help="only Splink")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
    args = parser.parse_args(argv)

    from shared.logging import configure_logging

    configure_logging("WARNING", json=False)
    from bench.identity.databases import fresh_databases
    from bench.identity.runner import run

    try:
        with fresh_databases(args.postgres, 2) as (one_by_one, batch):
            run(
                args.size,
                args.out,
                args.database_url or one_by_one,
                seed=args.seed,
                records=args.records,
                ours=not args.no_ours,
                splink=not args.no_splink,
                batch=not args.no_batch,
                batch_database_url=batch,
                quiet=args.quiet,
            )
    except RuntimeError as exc:  # e.g. a database that is not empty
        print(f"bench.identity: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

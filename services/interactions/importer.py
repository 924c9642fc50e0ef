"""Import contacts from a file (`crm interactions import`): JSONL or CSV, in batches through the same
bulk use case as `POST /interactions/bulk`, with a progress bar and a per-row error report.

Each row is one `POST /interactions` body. JSONL: one JSON object per line. CSV: flat columns named
like the fields; `tags` as `a|b` or a JSON list; `attributes` as a JSON object; the customer by
`customer_id` or by one of `customer_email`, `customer_phone`, `customer_card`. Empty cells are
absent fields. A malformed row (not JSON, a bad cell, a value the schema refuses, an unknown
customer) is reported with its row number, the field (as the file names it) and the reason; it never
blocks the valid rows. Rows are numbered by file line: a JSONL line, the line a CSV record is on (the
header is line 1; a record whose quoted cell spans lines counts as its last line).

Each batch is one transaction. Rows with an `idempotency_key` make a rerun safe (they come back as
duplicates), so an import stopped half-way can simply be run again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.exc import IntegrityError

from services.interactions import contacts
from services.interactions.directory import CustomerDirectory
from shared.runtime import ServiceRuntime

DEFAULT_BATCH = 1000
MAX_BATCH = 5000
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CUSTOMER_COLUMNS = {"customer_email": "email", "customer_phone": "phone", "customer_card": "card"}


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {row, field, message}

    @property
    def rejected(self) -> int:
        return len({e["row"] for e in self.errors})

    def as_dict(self) -> dict[str, Any]:
        """The shape `crm` prints (`outcomes`, `rejected`, `errors`), with the row count."""
        return {
            "rows": self.rows,
            "outcomes": {"created": self.created, "duplicate": self.duplicates},
            "rejected": self.rejected,
            "errors": sorted(self.errors, key=lambda e: int(e["row"])),
        }


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    data: dict[str, Any] | None  # None when the row could not be read
    errors: tuple[tuple[str | None, str], ...] = ()  # (field, message) found while reading


def is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def count_rows(path: Path) -> int:
    """How many rows `read_rows` will yield (for the progress bar), reading the file once quickly."""
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        if is_jsonl(path):
            return sum(1 for line in handle if line.strip())
        try:
            records = sum(1 for record in csv.reader(handle) if any(cell.strip() for cell in record))
        except csv.Error:  # reported row by row when read; an estimate is enough here
            handle.seek(0)
            records = sum(1 for line in handle if line.strip())
        return max(0, records - 1)


def read_rows(path: Path) -> Iterator[Row]:
    """The file's rows as `POST /interactions` bodies, in file order, with what was wrong in reading
    them (a row that could not be read has no data)."""
    if is_jsonl(path):
        yield from _jsonl_rows(path)
    else:
        yield from _csv_rows(path)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield Row(number, None, ((None, "not UTF-8 text"),))
                continue
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(number, None, ((None, f"not JSON: {exc.msg} (column {exc.colno})"),))
                continue
            if not isinstance(data, dict):
                yield Row(number, None, ((None, "not a JSON object"),))
                continue
            yield Row(number, data)


def _csv_rows(path: Path) -> Iterator[Row]:
    # Undecodable bytes are kept as surrogates and reported for their cell, not for the whole file.
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a NUL byte, a cell over the size limit: skip the record
                yield Row(reader.line_num, None, ((None, f"not CSV: {exc}"),))
                continue
            cells = [value for key, value in record.items() if key is not None] + list(record.get(None) or [])
            if not any((cell or "").strip() for cell in cells):
                continue  # a row of empty cells: a spreadsheet's trailing line
            # The file line where the record ends (its only line, unless a quoted cell spans several).
            yield _csv_row(reader.line_num, record)


def _csv_row(number: int, record: dict[str | None, Any]) -> Row:
    errors: list[tuple[str | None, str]] = []
    data: dict[str, Any] = {}
    customer: dict[str, str] = {}
    for raw_key, value in record.items():
        if raw_key is None:
            errors.append((None, "more cells than the header has columns"))
            continue
        key = raw_key.strip()
        if not key or value is None or value == "":
            continue
        if not _is_text(value):
            errors.append((key, "not UTF-8 text"))
            continue
        if key in CUSTOMER_COLUMNS:
            customer[CUSTOMER_COLUMNS[key]] = value
        elif key == "tags":
            try:
                data["tags"] = _tags(value)
            except ValueError as exc:
                errors.append(("tags", str(exc)))
        elif key == "attributes":
            try:
                attributes = json.loads(value)
            except json.JSONDecodeError as exc:
                errors.append(("attributes", f"not JSON: {exc.msg}"))
                continue
            if not isinstance(attributes, dict):
                errors.append(("attributes", "not a JSON object"))
                continue
            data["attributes"] = attributes
        else:
            data[key] = value
    if customer:
        data["customer"] = customer
    return Row(number, None if errors else data, tuple(errors))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a byte that was not UTF-8, kept as a surrogate
        return False
    return True


def _tags(value: str) -> list[str]:
    """`a|b|c`, or a JSON list of strings."""
    if value.lstrip().startswith("["):
        try:
            tags = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg}") from exc
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ValueError("a JSON list of strings, or a|b")
        return cast(list[str], tags)
    return [tag.strip() for tag in value.split("|") if tag.strip()]


def _file_field(field_path: str, index: int, csv_file: bool) -> str | None:
    """`body.items.3.customer.email` → `customer.email` (JSONL) or `customer_email` (CSV)."""
    prefix = f"body.items.{index}"
    rest = field_path[len(prefix) :].lstrip(".") if field_path.startswith(prefix) else field_path
    if not rest:
        return None
    if csv_file:
        for column, kind in CUSTOMER_COLUMNS.items():
            if rest == f"customer.{kind}":
                return column
    return rest


async def import_file(
    runtime: ServiceRuntime,
    path: Path,
    *,
    batch_size: int = DEFAULT_BATCH,
    source_system: str | None = None,
    show_progress: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Record every valid contact of the file, `batch_size` rows per transaction (the bulk use case:
    idempotency keys seen before are duplicates, each row validated and its customer resolved on its
    own). `source_system` fills rows that do not say theirs."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be between 1 and {MAX_BATCH}")
    directory: CustomerDirectory = runtime.app.state.directory
    csv_file = not is_jsonl(path)
    report = ImportReport()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    )

    async def flush(batch: list[Row]) -> None:
        items = [cast(dict[str, Any], row.data) for row in batch]
        try:
            result = await contacts.record_bulk(runtime.uow(), directory, items)
        except IntegrityError:
            # A key recorded by someone else between our check and our insert: check again.
            result = await contacts.record_bulk(runtime.uow(), directory, items)
        for item in result.items:
            number = batch[item.index].number
            if item.status == "created":
                report.created += 1
            elif item.status == "duplicate":
                report.duplicates += 1
            else:
                for error in item.errors:
                    report.errors.append(
                        {
                            "row": number,
                            "field": _file_field(error["field"], item.index, csv_file),
                            "message": error["message"].removeprefix("Value error, "),
                        }
                    )

    with progress:
        task = progress.add_task(f"Importing {path.name}", total=count_rows(path))

        def advance(rows: int) -> None:
            progress.advance(task, rows)
            if on_progress is not None:
                on_progress(rows)

        batch: list[Row] = []
        for row in read_rows(path):
            report.rows += 1
            if row.data is None:
                report.errors.extend({"row": row.number, "field": f, "message": m} for f, m in row.errors)
                advance(1)
                continue
            if source_system is not None:
                row.data.setdefault("source_system", source_system)
            batch.append(row)
            if len(batch) >= batch_size:
                await flush(batch)
                advance(len(batch))
                batch = []
        if batch:
            await flush(batch)
            advance(len(batch))
    return report

"""A real chDB store for read-side unit tests, and rows put in it by column name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ports.store import Store


@contextmanager
def migrated_store(path: Path) -> Iterator[Store]:
    store = Store.connect(None, path)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def seed(store: Store, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows given as column -> value (every row names the same columns; the table's
    other columns take their defaults, `version` 1 unless given)."""
    columns = list(rows[0])
    if "version" not in columns:
        columns.append("version")
    data = [[row.get(c, 1) if c == "version" else row[c] for row in rows] for c in columns]
    store.insert(f"defimon.{table}", columns, data)

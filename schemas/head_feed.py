"""The head feed: the rows the store writes, on the bus, for the API's head view (api/head_view.py).

The flow's store writer publishes, after each insert, the rows it just stored of the tables a
head answer reads (`HEAD_TABLES`, passed in: what the read sides declare,
protocols/read_side.py), per chain, and with the last chunk of a flush the chain's
`processed` block as of that insert. Publishing after the insert is what makes a view built
from the store consistent with the bus: a row whose event a new API process did not receive
was stored before it read the store.

The feed is a bus of its own (defimon/instance.py `head_feed`; over NATS a stream of its own,
defimon/nats_bus.py `NatsConfig.head_feed`), so stream clients and their event ids never see
it. It also carries the flow's `reorg` events, once the store has retracted the blocks. Rows
go as plain JSON: integers beyond 64 bits as decimal strings, back to integers by the
column's type; times as ISO-8601.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.stream import BusEvent

ROWS = "rows"

# Rows per event: a NATS message stays well under the server's default 1 MB payload limit.
CHUNK_ROWS = 200

_INT64 = 1 << 63


def _wire(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return str(value)
    return value


def rows_events(
    chain_id: int,
    tables: Mapping[str, Sequence[Sequence[Any]]],
    columns: Mapping[str, Sequence[str]],
    processed: int,
    carried: Collection[str],
) -> list[BusEvent]:
    """One chain's rows of one store insert (table -> rows in `columns[table]` order) of the
    `carried` tables (protocols/registry.py HEAD_TABLES: the schemas do not import the
    protocols) as feed events; the last carries the chain's processed block (it is applied
    after all of them)."""
    events: list[BusEvent] = []
    now = time.time()
    for table, rows in tables.items():
        name = table.split(".")[-1]
        if name not in carried or not rows:
            continue
        cols = list(columns[table])
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = [[_wire(v) for v in row] for row in rows[start : start + CHUNK_ROWS]]
            data = {"table": name, "columns": cols, "rows": chunk, "processed": None}
            events.append(BusEvent(ROWS, chain_id, processed, "", data, (), now))
    marker: dict[str, Any] = {"table": None, "columns": [], "rows": [], "processed": processed}
    events.append(BusEvent(ROWS, chain_id, processed, "", marker, (), now))
    return events


def from_wire(value: Any, ch_type: str) -> Any:
    """A feed value as the store gives it back for a column of this ClickHouse type."""
    if value is None:
        return None
    if "Int" in ch_type:
        return int(value)
    if "DateTime" in ch_type:
        # The store returns naive UTC times.
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        return when
    return value

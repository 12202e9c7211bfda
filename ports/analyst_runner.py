"""Analyst SQL, the part that talks to the store: check a statement with ClickHouse's own
parser, then run it read-only under the limits and shape the result (see analyst_sql.py)."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ports.analyst_sql import (
    FORMATS,
    MAX_SQL_CHARS,
    SqlLimits,
    SqlRefused,
    arrow_table,
    check_ast,
    check_text,
    classify_failure,
    json_result,
    parse_ast,
)
from ports.store import Store
from schemas.errors import InvalidInput, QueryFailed, StoreError

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True, slots=True)
class SqlOutput:
    media_type: str
    body: bytes


class AnalystSql:
    """Runs analyst statements on a handle of its own that is read-only with the limits set."""

    def __init__(self, store: Store, limits: SqlLimits) -> None:
        self.limits = limits
        self._base = store
        self._store = store.read_only(limits.clickhouse_settings())
        # One handle: the driver serializes calls on it anyway; the lock makes a check and its
        # run one unit, so a slow query never interleaves with another's parse.
        self._lock = threading.Lock()

    def close(self) -> None:
        self._store.close()

    def check(self, sql: str) -> str:
        """The canonical statement that may run, or SqlRefused / SqlFailed saying why not."""
        if len(sql) > MAX_SQL_CHARS:
            raise SqlRefused(f"refused: the statement is longer than {MAX_SQL_CHARS} characters")
        if not sql.strip():
            raise SqlRefused("refused: the statement is empty")
        # The text goes in as a parameter: the engine parses it without running it.
        canonical = self._ask(
            lambda: self._store.typed("SELECT formatQuerySingleLine({sql:String})", {"sql": sql})
        )[2][0][0]
        check_text(canonical)
        ast = self._ask(lambda: self._store.typed(f"EXPLAIN AST {canonical}"))[2]
        check_ast(parse_ast([str(line[0]) for line in ast]))
        return str(canonical)

    def run(self, sql: str, fmt: str) -> SqlOutput:
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        with self._lock:
            canonical = self.check(sql)
            started = time.perf_counter()
            if fmt == "csv":
                body = self._ask(lambda: self._store.raw(canonical, "CSVWithNames"))
                return SqlOutput(MEDIA_TYPES["csv"], body)
            names, types, rows, read = self._ask(lambda: self._store.typed(canonical))
            elapsed_ms = (time.perf_counter() - started) * 1000
        if fmt == "json":
            result = json_result(names, types, rows, read, elapsed_ms)
            return SqlOutput(MEDIA_TYPES["json"], orjson.dumps(result))
        table = arrow_table(names, types, rows)
        sink = io.BytesIO()
        if fmt == "arrow":
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, sink)
        return SqlOutput(MEDIA_TYPES[fmt], sink.getvalue())

    def run_json(self, sql: str) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.run(sql, "json").body)
        return result

    def _ask(self, call: Any) -> Any:
        try:
            return call()
        except QueryFailed as exc:
            self._renew()
            raise classify_failure(exc.code, str(exc), self.limits) from exc
        except StoreError:
            self._renew()
            raise

    def _renew(self) -> None:
        """A fresh handle after a failure: a chDB handle whose query failed mid-stream can hand
        the rest of that stream to the next query (seen with CSV output)."""
        stale = self._store
        try:
            self._store = self._base.read_only(self.limits.clickhouse_settings())
        finally:
            stale.close()

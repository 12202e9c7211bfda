"""The ClickHouse store: one surface over a ClickHouse server (HTTP) and chDB (in-process).

Both go through clickhouse-connect, so the same SQL and the same parameter binding run on
both. chDB locks its data directory to one process; within the process, each `Store` holds its
own handle, so the flow's writer and the API's readers do not serialize on one lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog

from schemas.errors import ConfigError, QueryFailed, StoreError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# Each protocol declares its own tables next to its code (protocols/<name>/tables.sql). Found by
# path, not imported: the store stays below the protocols in the layering.
PROTOCOLS_DIR = Path(__file__).resolve().parent.parent / "protocols"


def migration_files() -> list[Path]:
    """The core migrations in order, then every protocol's tables (by protocol name)."""
    return sorted(SQL_DIR.glob("*.sql")) + sorted(PROTOCOLS_DIR.glob("*/tables.sql"))


log = structlog.get_logger("defimon.store")

_migrate_lock = threading.Lock()
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_ERROR_CODE = re.compile(r"\bCode:\s*(\d+)")


class Store:
    def __init__(
        self,
        client: Any,
        *,
        url: str | None,
        data_dir: Path | None,
        query_settings: Mapping[str, Any] | None = None,
        analyst_url: str | None = None,
    ) -> None:
        self._client = client
        self.url = url
        self.data_dir = data_dir
        # A ClickHouse server's read-only user (profile readonly=2, see deploy/clickhouse) for
        # analyst SQL; the server itself then refuses writes, whatever is sent.
        self.analyst_url = analyst_url
        # Settings sent with every query (a ClickHouse server has no per-handle session here).
        self._query_settings = dict(query_settings) if query_settings else None

    @property
    def backend(self) -> str:
        return "clickhouse" if self.url else "chdb"

    @classmethod
    def connect(
        cls, url: str | None = None, data_dir: Path | None = None, analyst_url: str | None = None
    ) -> Store:
        """A ClickHouse server when `url` is given (http://user:pass@host:8123), else chDB."""
        import clickhouse_connect

        try:
            if url:
                parsed = urlparse(url)
                if parsed.scheme not in ("http", "https") or not parsed.hostname:
                    raise ConfigError(f"ClickHouse URL must be http(s)://host:port, got {url!r}")
                client = clickhouse_connect.get_client(
                    host=parsed.hostname,
                    port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                    username=parsed.username or "default",
                    password=parsed.password or "",
                    secure=parsed.scheme == "https",
                    # A shared client serves concurrent requests; sessions would serialize them.
                    autogenerate_session_id=False,
                )
            else:
                if data_dir is None:
                    raise ConfigError("chDB needs a data directory")
                data_dir.mkdir(parents=True, exist_ok=True)
                client = clickhouse_connect.get_client(
                    interface="chdb", path=str(data_dir.resolve() / "chdb")
                )
        except ConfigError:
            raise
        except Exception as exc:  # the driver raises many types; callers need one
            raise StoreError(f"cannot open the store: {exc}") from exc
        return cls(client, url=url, data_dir=data_dir, analyst_url=analyst_url)

    def another(self) -> Store:
        """A second handle on the same store (for another thread)."""
        return Store.connect(self.url, self.data_dir, self.analyst_url)

    def read_only(self, limits: Mapping[str, int | float | str]) -> Store:
        """A new handle that can only read, under `limits` (ClickHouse settings), for analyst SQL.

        chDB: the settings are SET on the handle's own session, `readonly = 1` last, so nothing
        sent later on this handle can change them (readonly=1 refuses SET and SETTINGS).
        A ClickHouse server: they travel with every query, readonly last for the same reason;
        with an analyst URL, as that user, whose profile makes it read-only (the server refuses
        a change of `readonly` there, so it is not sent).
        """
        settings: dict[str, int | float | str] = {**limits, "readonly": 1}
        for name, value in settings.items():
            # Names and values come from code and Settings, never from a caller; check anyway
            # because they are spliced into SET statements.
            if not _SETTING_NAME.match(name) or not isinstance(value, int | float | str):
                raise ConfigError(f"bad ClickHouse setting {name}={value!r}")
            if isinstance(value, str) and not _SETTING_NAME.match(value):
                raise ConfigError(f"bad ClickHouse setting {name}={value!r}")
        if self.url and self.analyst_url:
            analyst = Store.connect(self.analyst_url, self.data_dir)
            analyst._query_settings = {k: v for k, v in settings.items() if k != "readonly"}
            return analyst
        if self.url:
            fresh = Store.connect(self.url, self.data_dir)
            return Store(
                fresh._client, url=self.url, data_dir=self.data_dir, query_settings=settings
            )
        handle = self.another()
        try:
            for name, value in settings.items():
                literal = f"'{value}'" if isinstance(value, str) else repr(value)
                handle.command(f"SET {name} = {literal}")
        except Exception:
            handle.close()
            raise
        return handle

    def typed(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[tuple[Any, ...]], int | None]:
        """Run one query: column names, ClickHouse type names, rows, rows read (if reported)."""
        try:
            result = self._client.query(sql, parameters=parameters, settings=self._query_settings)
        except Exception as exc:
            raise _query_error(exc) from exc
        types = [t.name for t in result.column_types]
        read = (result.summary or {}).get("read_rows")
        return (
            list(result.column_names),
            types,
            list(result.result_rows),
            int(read) if read is not None else None,
        )

    def raw(self, sql: str, fmt: str) -> bytes:
        """Run one query and return the engine's own output in a ClickHouse format."""
        try:
            body: bytes = self._client.raw_query(sql, fmt=fmt, settings=self._query_settings)
        except Exception as exc:
            raise _query_error(exc) from exc
        return body

    def migrate(self) -> None:
        """Apply sql/*.sql in order, then each protocol's tables.sql; every statement there is
        idempotent."""
        with _migrate_lock:
            applied = []
            for path in migration_files():
                for statement in split_statements(path.read_text()):
                    self.command(statement)
                applied.append(
                    path.name if path.parent == SQL_DIR else f"{path.parent.name}/{path.name}"
                )
            now = datetime.now(UTC)
            # Recording it also warms the insert path (the driver imports its codecs lazily).
            self.insert(
                "defimon.schema_info",
                ("file", "applied_at", "version"),
                [applied, [now] * len(applied), [time.time_ns()] * len(applied)],
            )
        log.info("store.migrated", backend=self.backend)

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=parameters)
        except Exception as exc:
            raise StoreError(f"{exc}") from exc

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        """Insert column-oriented data (one sequence per column)."""
        if not data or not data[0]:
            return
        try:
            self._client.insert(table, data, column_names=list(columns), column_oriented=True)
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {exc}") from exc

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT with server-side parameters ({name:Type})."""
        try:
            return list(self._client.query(sql, parameters=parameters).result_rows)
        except Exception as exc:
            raise StoreError(f"{exc}") from exc

    def dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            result = self._client.query(sql, parameters=parameters)
        except Exception as exc:
            raise StoreError(f"{exc}") from exc
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(sql, parameters)
        return found[0][0] if found else None

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing is best effort; nothing useful to do with a failure
            pass


def _query_error(exc: Exception) -> StoreError:
    """ClickHouse's own refusals (they carry a code) apart from a store that is unreachable."""
    text = str(exc)
    found = _ERROR_CODE.search(text)
    if found:
        return QueryFailed(text, code=int(found.group(1)))
    return StoreError(text)


def split_statements(text: str) -> list[str]:
    """Split a .sql file on semicolons that end a line; drop comment-only chunks."""
    chunks = re.split(r";\s*$", text, flags=re.MULTILINE)
    statements = []
    for chunk in chunks:
        body = "\n".join(
            line for line in chunk.splitlines() if not line.strip().startswith("--")
        ).strip()
        if body:
            statements.append(body)
    return statements

"""`defimon sql "SELECT ..."`: analyst SQL from the command line.

chDB locks its data directory to one process. So: with `--api`, the statement goes to that
running defimon's POST /v1/sql; otherwise the store is opened directly (read-only handle, the
same checks and limits as the API), and if another process holds it (a `defimon demo`/`run`)
the statement goes to that process's API at http://HOST:PORT from the settings.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx
import orjson

from ports.settings import Settings
from schemas.errors import DefimonError


class SqlCliError(DefimonError):
    """The statement could not be run from the command line (refused, failed, unreachable)."""


def via_api(api: str, sql: str, fmt: str, timeout: float) -> bytes:
    try:
        # A server with API keys wants one with the `sql` scope: from $DEFIMON_API_KEY.
        key = os.environ.get("DEFIMON_API_KEY")
        response = httpx.post(
            api.rstrip("/") + "/v1/sql",
            json={"sql": sql, "format": fmt},
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"} if key else None,
        )
    except httpx.HTTPError as exc:
        raise SqlCliError(f"no defimon API answered at {api}: {exc}") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise SqlCliError(f"{detail} (HTTP {response.status_code})")
    return response.content


def direct(settings: Settings, sql: str, fmt: str) -> bytes:
    """Open the store in this process. Raises StoreError mentioning the lock if it is held."""
    from ports.analyst_runner import AnalystSql
    from ports.analyst_sql import SqlLimits
    from ports.store import Store

    if settings.clickhouse_url is None and not (settings.data_dir / "chdb").is_dir():
        raise SqlCliError(f"no store at {settings.data_dir} (pass --data-dir, or --api URL)")
    store = Store.connect(settings.clickhouse_url, settings.data_dir)
    try:
        analyst = AnalystSql(store, SqlLimits.from_settings(settings))
        try:
            return analyst.run(sql, fmt).body
        finally:
            analyst.close()
    finally:
        store.close()


def held_by_another_process(settings: Settings) -> bool:
    """Whether a running chDB engine holds the data directory. ClickHouse flocks its `status`
    file for its whole life; probing that lock avoids starting an engine that would fail."""
    status = settings.data_dir / "chdb" / "status"
    if settings.clickhouse_url is not None or not status.exists():
        return False
    try:
        with status.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False  # unreadable: opening the store will say what is wrong
    return False


def run_sql(settings: Settings, sql: str, fmt: str, api: str | None) -> bytes:
    """The result body in `fmt` (json for the table view), from the API or the store."""
    timeout = settings.sql_max_execution_seconds + 30
    if api:
        return via_api(api, sql, fmt, timeout)
    if not held_by_another_process(settings):
        return direct(settings, sql, fmt)
    default = f"http://{settings.host}:{settings.port}"
    try:
        return via_api(default, sql, fmt, timeout)
    except SqlCliError as exc:
        if "no defimon API answered" not in str(exc):
            raise
        raise SqlCliError(
            f"the store at {settings.data_dir} is in use by another process (a running "
            f"defimon?) and {exc}. Pass --api URL, or --host/--port"
        ) from exc


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def render_table(result: dict[str, Any], out: TextIO) -> None:
    """An aligned text table; numbers (and big integers, which arrive as strings) right-aligned."""
    columns = result["columns"]
    names = [c["name"] for c in columns]
    numeric = [
        c["type"].removeprefix("Nullable(").startswith(("UInt", "Int", "Float", "Decimal"))
        for c in columns
    ]
    cells = [[_cell(v) for v in row] for row in result["rows"]]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out.write(line(names) + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    count = len(cells)
    out.write(f"({count} row{'s' if count != 1 else ''})\n")


def main(settings: Settings, sql: str, fmt: str, api: str | None) -> int:
    body = run_sql(settings, sql, "json" if fmt == "table" else fmt, api)
    if fmt == "table":
        render_table(orjson.loads(body), sys.stdout)
    elif fmt == "json":
        sys.stdout.write(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.buffer.write(body)
    sys.stdout.flush()
    return 0

"""The flow's chDB store over ClickHouse's HTTP interface (defimon/ch_http.py), used by the real
clickhouse-connect HTTP client through Store, as `defimon api` uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from defimon.ch_http import ChdbHttpEngine, ClickHouseHttpServer, store_users
from ports.analyst_runner import AnalystSql
from ports.analyst_sql import SqlLimits
from ports.settings import Settings
from ports.store import Store
from schemas.errors import QueryFailed, StoreError


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    """The process's chDB store, migrated, and the base URL of its HTTP interface."""
    local = Store.connect(None, tmp_path)
    local.migrate()
    engine = ChdbHttpEngine(tmp_path.resolve() / "chdb")
    limits = SqlLimits.from_settings(Settings()).clickhouse_settings()
    server = ClickHouseHttpServer(
        ("127.0.0.1", 0), engine, store_users("defimon", "w-pass", "analyst", "a-pass", limits)
    ).start()
    try:
        yield local, f"127.0.0.1:{server.port}"
    finally:
        server.stop()
        local.close()


def test_writes_and_reads_through_http_equal_the_embedded_store(
    served: tuple[Store, str],
) -> None:
    local, address = served
    remote = Store.connect(f"http://defimon:w-pass@{address}")
    try:
        remote.migrate()  # DDL and a Native insert through HTTP
        remote.command(
            "CREATE TABLE defimon.http_check (id UInt64, amount UInt256, name String) "
            "ENGINE = MergeTree ORDER BY id"
        )
        amounts = [2**255 + 7, 0, 10**30]
        remote.insert(
            "defimon.http_check", ("id", "amount", "name"), [[1, 2, 3], amounts, ["a", "b", "c"]]
        )
        rows = remote.rows(
            "SELECT id, amount, name FROM defimon.http_check WHERE id >= {low:UInt64} ORDER BY id",
            {"low": 1},
        )
        assert rows == [(1, amounts[0], "a"), (2, 0, "b"), (3, amounts[2], "c")]
        assert local.rows("SELECT id, amount FROM defimon.http_check ORDER BY id") == [
            (1, amounts[0]),
            (2, 0),
            (3, amounts[2]),
        ], "the embedded store does not hold what was written over HTTP"
        names, types, _, read = remote.typed("SELECT sum(id) AS s FROM defimon.http_check")
        assert (names, types) == (["s"], ["UInt64"])
        assert read == local.typed("SELECT sum(id) AS s FROM defimon.http_check")[3]
        assert remote.raw("SELECT id FROM defimon.http_check ORDER BY id", "CSV") == b"1\n2\n3\n"
        with pytest.raises(QueryFailed) as failed:
            remote.typed("SELECT nothing FROM defimon.no_such_table")
        assert failed.value.code == 60
    finally:
        remote.close()


def test_the_analyst_user_is_read_only_whatever_it_sends(served: tuple[Store, str]) -> None:
    _, address = served
    writer_url = f"http://defimon:w-pass@{address}"
    analyst_url = f"http://analyst:a-pass@{address}"
    store = Store.connect(writer_url, analyst_url=analyst_url)
    analyst = AnalystSql(store, SqlLimits.from_settings(Settings(sql_max_result_rows=50)))
    direct = Store.connect(analyst_url)
    try:
        files = store.scalar("SELECT count() FROM defimon.schema_info")
        assert files > 0
        assert analyst.run_json("SELECT count() AS n FROM defimon.schema_info")["rows"] == [[files]]
        with pytest.raises(Exception, match="max rows: 50"):  # the limit travels as a setting
            analyst.run_json("SELECT number FROM system.numbers LIMIT 500")
        # Straight at the server, skipping the API's own checks: the server refuses.
        for statement in (
            "DROP TABLE defimon.schema_info",
            "INSERT INTO defimon.schema_info (file) VALUES ('x')",
            "SET readonly = 0",
            "SELECT 1 SETTINGS readonly = 0",
        ):
            with pytest.raises(StoreError, match="164"):
                direct.command(statement)
        # The profile's limits: lowered per query, never raised.
        assert direct.typed("SELECT 1", None)[2] == [(1,)]
        raised = Store(
            direct._client,
            url=direct.url,
            data_dir=None,
            query_settings={"max_result_rows": 10**9},
        )
        with pytest.raises(QueryFailed) as refused:
            raised.typed("SELECT 1")
        assert refused.value.code == 452
        assert store.scalar("SELECT count() FROM defimon.schema_info") == files
    finally:
        analyst.close()
        direct.close()
        store.close()


def test_http_details_a_client_relies_on(served: tuple[Store, str]) -> None:
    _, address = served
    base = f"http://{address}"
    ping = httpx.get(f"{base}/ping")
    assert (ping.status_code, ping.text) == (200, "Ok.\n")
    wrong = httpx.post(f"{base}/", content=b"SELECT 1", auth=("defimon", "nope"))
    assert wrong.status_code == 403
    assert wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    assert wrong.text.startswith("Code: 516. DB::Exception:")
    ok = httpx.post(
        f"{base}/",
        params={"query": "SELECT {x:UInt8} + 1 AS y", "param_x": "41", "default_format": "JSON"},
        auth=("defimon", "w-pass"),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"] == [{"y": 42}]
    assert ok.headers["X-ClickHouse-Format"] == "JSON"
    assert '"read_rows"' in ok.headers["X-ClickHouse-Summary"]
    # ClickHouse runs a GET read-only, even for the writer.
    get = httpx.get(
        f"{base}/",
        params={"query": "CREATE TABLE defimon.t (a UInt8) ENGINE = Memory"},
        auth=("defimon", "w-pass"),
    )
    assert (get.status_code, get.headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    syntax = httpx.post(f"{base}/", content=b"SELEC 1", auth=("defimon", "w-pass"))
    assert (syntax.status_code, syntax.headers["X-ClickHouse-Exception-Code"]) == (400, "62")

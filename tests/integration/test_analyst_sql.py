"""Analyst SQL over real HTTP on a store the real flow filled from a devnet with Uniswap and Aave.

The SQL server runs without the flow, so the store stands still while a battery of hostile
statements is thrown at it; afterwards every table holds exactly what it held before, no file
was written and no connection was made.
"""

from __future__ import annotations

import csv
import io
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from defimon.runtime import Runtime
from devnet.anvil import Anvil, free_port
from devnet.deploy import deploy
from devnet.main import DevnetSimulator
from flows.endpoint import ChainEndpoint
from ports.settings import Settings
from tests.support import LiveServer, block_number, live_server

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Indexed:
    server: LiveServer
    data_dir: Path
    head: int

    def sql(self, sql: str, fmt: str = "json") -> httpx.Response:
        return httpx.post(self.server.url + "/v1/sql", json={"sql": sql, "format": fmt}, timeout=60)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    data_dir = tmp_path_factory.mktemp("analyst-sql")
    anvil = Anvil().start()
    simulator: DevnetSimulator | None = None
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=11)
        for _ in range(6):
            simulator.step()
        endpoint = ChainEndpoint(deployment.to_chain_config(), anvil.rpc_url, anvil.ws_url)
        head = block_number(anvil.rpc_url)
        with live_server(data_dir, [endpoint]) as filling:
            filling.wait_processed(deployment.chain_id, head)
        # The same store, served without the flow: nothing writes while the battery runs.
        settings = Settings(
            data_dir=data_dir,
            sql_max_execution_seconds=2.0,
            sql_max_rows_to_read=5_000_000,
            sql_max_result_rows=1000,
            sql_max_memory_bytes=256 * 2**20,
        )
        runtime = Runtime(settings, [endpoint])
        server = LiveServer(runtime, free_port(), start_flow=False).start()
        try:
            yield Indexed(server, data_dir, head)
        finally:
            server.stop()
    finally:
        if simulator is not None:
            simulator.close()
        anvil.stop()


def test_reads_come_back_exact_in_every_format(indexed: Indexed) -> None:
    sql = (
        "SELECT position_id, token_id, liquidity, deposited0, owner, block_time "
        "FROM defimon.position_versions FINAL ORDER BY position_id, block_number, log_index"
    )
    stored = indexed.server.runtime.store.rows(sql)
    assert stored, "the flow stored no positions"

    response = indexed.sql(sql)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert [c["name"] for c in body["columns"]] == [
        "position_id",
        "token_id",
        "liquidity",
        "deposited0",
        "owner",
        "block_time",
    ]
    assert [c["type"] for c in body["columns"]][1:3] == ["UInt256", "UInt128"]
    assert body["rows_read"] >= len(stored) and body["elapsed_ms"] >= 0
    as_json = [[r[0], int(r[1]), int(r[2]), int(r[3]), r[4]] for r in body["rows"]]
    assert as_json == [[r[0], r[1], r[2], r[3], r[4]] for r in stored]

    # Integers past 2^53 arrive as strings, smaller ones as numbers; nothing loses a digit.
    wide = indexed.sql(
        f"SELECT toUInt256('{2**256 - 1}') AS u256, toInt256('{-(2**255)}') AS i256, "
        "toUInt64(18446744073709551615) AS u64, toUInt64(9007199254740991) AS safe, "
        "toDecimal128('1.000000000000000001', 18) AS dec"
    ).json()
    assert wide["rows"] == [
        [
            str(2**256 - 1),
            str(-(2**255)),
            str(2**64 - 1),
            2**53 - 1,
            "1.000000000000000001",
        ]
    ]

    response = indexed.sql(sql, "csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == [c["name"] for c in body["columns"]]
    assert [[r[0], int(r[1]), int(r[2]), int(r[3]), r[4]] for r in lines[1:]] == as_json

    response = indexed.sql(sql, "arrow")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(response.content).read_all()
    check_table(table, as_json)

    response = indexed.sql(sql, "parquet")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    check_table(pq.read_table(io.BytesIO(response.content)), as_json)


def check_table(table: pa.Table, expected: list[list[Any]]) -> None:
    assert table.schema.field("liquidity").type == pa.string()  # UInt128: exact, as text
    assert pa.types.is_timestamp(table.schema.field("block_time").type)
    rows = table.to_pylist()
    assert [
        [
            r["position_id"],
            int(r["token_id"]),
            int(r["liquidity"]),
            int(r["deposited0"]),
            r["owner"],
        ]
        for r in rows
    ] == expected


def test_describe_show_explain_and_empty_results(indexed: Indexed) -> None:
    for sql in (
        "SHOW TABLES FROM defimon",
        "DESCRIBE TABLE defimon.pool_states",
        "EXPLAIN SELECT count() FROM defimon.blocks FINAL",
        "EXISTS TABLE defimon.blocks",
        "SELECT * FROM defimon.liquidations FINAL WHERE 0",
    ):
        response = indexed.sql(sql)
        assert response.status_code == 200, (sql, response.text)
    tables = indexed.sql("SHOW TABLES FROM defimon").json()["rows"]
    assert ["position_versions"] in tables
    empty = indexed.sql("SELECT * FROM defimon.liquidations FINAL WHERE 0", "parquet")
    assert pq.read_table(io.BytesIO(empty.content)).num_rows == 0


def readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## SQL for analysts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_examples_run(indexed: Indexed) -> None:
    queries = readme_queries()
    assert len(queries) >= 4
    for sql in queries:
        response = indexed.sql(sql)
        assert response.status_code == 200, (sql, response.text)
    # The positions example, for a wallet that holds some, agrees with the API at the head.
    example = re.search(r"owner = '(0x[0-9a-f]{40})'", queries[0])
    assert example is not None
    wallet = indexed.server.runtime.store.scalar(
        "SELECT owner FROM defimon.position_versions FINAL WHERE NOT burned "
        "ORDER BY block_number DESC LIMIT 1"
    )
    sql = queries[0].replace("<= 1000", f"<= {indexed.head}").replace(example.group(1), wallet)
    rows = indexed.sql(sql).json()["rows"]
    assert rows
    served = indexed.server.get(f"/v1/portfolio/{wallet}", at=indexed.head).json()
    assert sorted(r[0] for r in rows) == sorted(p["id"] for p in served["positions"])


class Listener:
    """A TCP port that counts connections: proof that nothing reached the network."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def snapshot(indexed: Indexed) -> dict[str, Any]:
    """Every defimon table, its definition, row count and a checksum of its rows."""
    store = indexed.server.runtime.store
    tables = store.rows(
        "SELECT name, create_table_query FROM system.tables WHERE database = 'defimon' "
        "ORDER BY name"
    )
    state: dict[str, Any] = {}
    for name, ddl in tables:
        count, checksum = store.rows(
            "SELECT count(), sum(cityHash64(*)) FROM defimon.{t:Identifier} FINAL",
            {"t": name},
        )[0]
        state[name] = (ddl, count, checksum)
    return state


def test_hostile_sql_is_refused_or_stopped_and_the_store_is_unchanged(
    indexed: Indexed, tmp_path: Path
) -> None:
    before = snapshot(indexed)
    assert len(before) >= 17 and before["position_versions"][1] > 0
    listener = Listener()
    outfile = tmp_path / "stolen.csv"
    net = f"http://127.0.0.1:{listener.port}/"
    refused = 400
    battery: list[tuple[str, int, str]] = [
        ("INSERT INTO defimon.tokens VALUES (1, '0xdead', 'X', 1, 1)", refused, "INSERT writes"),
        (
            "INSERT INTO defimon.tokens SELECT * FROM defimon.tokens",
            refused,
            "INSERT writes",
        ),
        ("ALTER TABLE defimon.blocks DELETE WHERE 1", refused, "ALTER writes"),
        ("ALTER TABLE defimon.blocks ADD COLUMN x UInt8", refused, "ALTER writes"),
        ("DELETE FROM defimon.blocks WHERE 1", refused, "DELETE writes"),
        ("DROP TABLE defimon.blocks", refused, "DROP changes the schema"),
        ("DROP DATABASE defimon", refused, "DROP changes the schema"),
        ("CREATE TABLE defimon.x (a UInt8) ENGINE = Memory", refused, "CREATE changes"),
        ("ATTACH TABLE defimon.blocks", refused, "ATTACH changes"),
        ("DETACH TABLE defimon.blocks", refused, "DETACH changes"),
        ("RENAME TABLE defimon.blocks TO defimon.b", refused, "RENAME changes"),
        ("TRUNCATE TABLE defimon.blocks", refused, "TRUNCATE writes"),
        ("OPTIMIZE TABLE defimon.blocks FINAL", refused, "OPTIMIZE writes"),
        ("SYSTEM DROP MARK CACHE", refused, "SYSTEM controls"),
        ("SYSTEM SHUTDOWN", refused, "SYSTEM controls"),
        ("SET readonly = 0", refused, "SET changes settings"),
        ("KILL QUERY WHERE 1", refused, "KILL stops"),
        ("GRANT ALL ON *.* TO default", refused, "GRANT changes access"),
        ("USE system", refused, "USE changes"),
        ("SELECT 1; DROP TABLE defimon.blocks", refused, "one statement at a time"),
        ("SELECT 1; SELECT 2", refused, "one statement at a time"),
        ("SELECT 1 -- x\n; DROP TABLE defimon.blocks", refused, "one statement"),
        # A `#` comment hides a quote from a naive tokenizer; ClickHouse's parser sees two.
        ("SELECT 1 # it's\n; DROP TABLE defimon.blocks -- '", refused, "one statement"),
        ("SELECT 1 SETTINGS readonly = 0", refused, "SETTINGS clauses"),
        ("SELECT 1 SETTINGS max_rows_to_read = 0", refused, "SETTINGS clauses"),
        (
            "SELECT * FROM (SELECT count() FROM numbers(1e12) SETTINGS max_rows_to_read = 0)",
            refused,
            "SETTINGS clauses",
        ),
        (f"SELECT 1 INTO OUTFILE '{outfile}'", refused, "INTO OUTFILE"),
        (f"SELECT 1 INTO OUTFILE '{outfile}' FORMAT CSV", refused, "INTO OUTFILE"),
        ("SELECT 1 FORMAT JSON", refused, "FORMAT clauses"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", refused, "file() reaches"),
        ("SELECT file('/etc/passwd')", refused, "file() reads files"),
        ("SELECT * FROM url('" + net + "', 'LineAsString')", refused, "url() reaches"),
        ("SELECT count() FROM url('" + net + "', 'CSV') AS u", refused, "url() reaches"),
        (
            "SELECT number FROM numbers(3) WHERE number IN "
            f"(SELECT * FROM url('{net}', 'CSV', 'x UInt64'))",
            refused,
            "url() reaches",
        ),
        (
            f"SELECT * FROM remote('127.0.0.1:{listener.port}', system.one)",
            refused,
            "remote() reaches",
        ),
        (f"SELECT * FROM s3('{net}x.csv')", refused, "s3() reaches"),
        ("SELECT * FROM mysql('127.0.0.1:1', 'd', 't', 'u', 'p')", refused, "mysql() reaches"),
        ("SELECT * FROM executable('id', 'TSV', 'x String')", refused, "executable() reaches"),
        ("SELECT * FROM python(store)", refused, "python() reaches"),
        ("SELECT * FROM merge('defimon', '.*')", refused, "merge() is not allowed"),
        ("SELECT * FROM view(SELECT * FROM file('/etc/passwd'))", refused, "file() reaches"),
        ("DESCRIBE TABLE url('" + net + "', 'CSV')", refused, "url() reaches"),
        ("EXPLAIN AST INSERT INTO defimon.tokens SELECT 1", refused, "only reads"),
        ("SELECT dictGet('d', 'a', 1)", refused, "dictGet()"),
        ("SELECT sleepEachRow(1) FROM numbers(100)", refused, "sleepEachRow()"),
        ("SHOW PROCESSLIST", refused, "ShowProcesslistQuery is not"),
        # Keywords inside comments and strings are just text.
        ("/* DROP TABLE defimon.blocks; */ SELECT 'INSERT; DROP' -- ; TRUNCATE", 200, ""),
        ("SELECT $$; DROP TABLE defimon.blocks$$ AS s", 200, ""),
        # Stopped by the limits.
        ("SELECT count() FROM numbers(1e12)", 400, "max_rows_to_read"),
        ("SELECT count() FROM system.numbers", 400, "TOO_MANY_ROWS"),
        ("SELECT number FROM numbers(100000)", 400, "Limit for result"),
        ("SELECT number FROM numbers(100000)", 400, "stopped by a limit"),
        (
            "SELECT length(groupArray(randomString(1000))) FROM numbers(1000000)",
            400,
            "memory limit",
        ),
        (
            "SELECT count() FROM numbers(10000) AS a, numbers(10000) AS b, numbers(10000) AS c",
            408,
            "longer than the 2 s limit",
        ),
        # ClickHouse's own errors, trimmed.
        ("SELEC 1", 400, "Syntax error"),
        ("SELECT * FROM defimon.nope", 400, "UNKNOWN_TABLE"),
        ("", 422, "sql"),
    ]
    try:
        for sql, status, fragment in battery:
            for fmt in ("json", "csv") if status != 422 else ("json",):
                response = indexed.sql(sql, fmt)
                assert response.status_code == status, (sql, fmt, response.text)
                if status != 200:
                    detail = response.json()["detail"]
                    assert fragment.lower() in detail.lower(), (sql, detail)
                    assert "Stack trace" not in detail and len(detail) <= 700
    finally:
        listener.close()
    assert listener.accepted == 0
    assert not outfile.exists()
    assert snapshot(indexed) == before
    # Still serving, and the writer's side of the store is untouched by the read-only handle.
    assert indexed.sql("SELECT count() FROM defimon.blocks FINAL").status_code == 200
    assert indexed.server.get("/readyz").status_code in (200, 503)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "defimon.cli", "sql", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )


def test_cli_goes_through_the_api_when_the_store_is_held(indexed: Indexed) -> None:
    # This test process holds the chDB directory (the server), as `defimon demo` would.
    sql = "SELECT symbol, decimals FROM defimon.tokens FINAL ORDER BY symbol"
    port = str(indexed.server.port)
    done = run_cli("--data-dir", str(indexed.data_dir), "--port", port, sql)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = indexed.server.runtime.store.rows(sql)
    assert lines[0].split("|")[0].strip() == "symbol"
    assert set(lines[1]) <= {"-", "+"}
    assert [line.split("|")[0].strip() for line in lines[2:-1]] == [r[0] for r in expected]
    assert lines[-1] == f"({len(expected)} rows)"

    done = run_cli("--api", indexed.server.url, "--format", "csv", sql)
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(io.StringIO(done.stdout)))[1:] == [[s, str(d)] for s, d in expected]

    done = run_cli("--api", indexed.server.url, "DROP TABLE defimon.tokens")
    assert done.returncode == 2 and "DROP changes the schema" in done.stderr

    # Held, and no API where it looks: a clear error, not a hang or a traceback.
    done = run_cli("--data-dir", str(indexed.data_dir), "--port", str(free_port()), "SELECT 1")
    assert done.returncode == 2
    assert "in use by another process" in done.stderr and "--api" in done.stderr


def test_cli_opens_the_store_directly_when_free(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    fill = (
        "from pathlib import Path; from ports.store import Store\n"
        f"s = Store.connect(None, Path({str(data_dir)!r})); s.migrate()\n"
        "s.command(\"INSERT INTO defimon.tokens VALUES (1, '0xabc', 'WETH', 18, 1)\")\n"
        "s.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", fill],
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        timeout=120,
    )
    done = run_cli(
        "--data-dir",
        str(data_dir),
        "SELECT symbol, decimals, toUInt256('1' || repeat('0', 70)) AS big "
        "FROM defimon.tokens FINAL",
    )
    assert done.returncode == 0, done.stderr
    header, _rule, row, count = done.stdout.splitlines()
    assert [c.strip() for c in header.split("|")] == ["symbol", "decimals", "big"]
    assert [c.strip() for c in row.split("|")] == ["WETH", "18", "1" + "0" * 70]
    assert count == "(1 row)"

    done = run_cli("--data-dir", str(data_dir), "--format", "json", "SELECT 1 AS one")
    assert done.returncode == 0 and '"one"' in done.stdout

    done = run_cli("--data-dir", str(data_dir), "SELECT * FROM file('/etc/passwd')")
    assert done.returncode == 2 and "file() reaches" in done.stderr
    done = run_cli("--data-dir", str(tmp_path / "nothing"), "SELECT 1")
    assert done.returncode == 2 and "no store at" in done.stderr

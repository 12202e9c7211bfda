"""ClickHouse's HTTP interface over the embedded chDB store, so other processes can share it.

chDB locks its data directory to one process. When the flow runs in a process of its own
(`defimon flow --store-http-port P`), this server lets `defimon api` (and anything else that
speaks ClickHouse HTTP) use that store with the real clickhouse-connect HTTP client, exactly as
against a ClickHouse server: `DEFIMON_CLICKHOUSE_URL=http://defimon:PASSWORD@flowhost:P`.

The subset served is what clickhouse-connect's HTTP client uses:
  * `GET /ping` → `Ok.`
  * `GET|POST /` with the statement in `query=` and/or the body (`INSERT ... FORMAT <fmt>`
    followed by the data, plain or gzip/deflate/lz4/zstd encoded, chunked or not),
    server-side parameters `param_<name>=`, `database=`, `default_format=`, and every other
    URL parameter as a ClickHouse setting;
  * `X-ClickHouse-{Summary,Query-Id,Format,Timezone,Server-Display-Name}` response headers;
  * errors as `Code: N. DB::Exception: ...` with `X-ClickHouse-Exception-Code` and the HTTP
    status ClickHouse gives the code (400 syntax, 403 readonly/auth, 404 unknown table, else 500).

Users: a writer (`defimon` by default) and a read-only `analyst`; each request authenticates
with Basic auth (or `user`/`password` parameters or `X-ClickHouse-User`/`-Key` headers, as
ClickHouse accepts). An analyst request runs as a ClickHouse `readonly = 2` profile with
constraints would: the analyst limits (Settings.sql_*) first, then `readonly = 2` (reads and
SET only; the engine refuses any change of `readonly`), then the request's settings, which may
lower a limit but not raise it. Every request gets its own chDB handle (about 1.5 ms),
so requests run in parallel and one request's settings never leak into another's. Results are
materialised before they are sent (analyst SQL caps result bytes; see Settings.sql_*).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import os
import re
import tempfile
import threading
import uuid
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import structlog

log = structlog.get_logger("defimon.ch_http")

# URL parameters the HTTP layer consumes itself (they are not engine settings).
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "http_zlib_compression_level",
    }
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"Code:\s*(\d+)")
# `INSERT INTO <target> FORMAT <fmt>` then the data; the first newline after the format name
# belongs to the statement, as in ClickHouse.
_INSERT = re.compile(
    rb"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*(?:\r?\n)?", re.I | re.S
)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
_RESULT_STATEMENT = re.compile(r"^\s*(\(|SELECT|WITH|SHOW|DESC|DESCRIBE|EXPLAIN|EXISTS)\b", re.I)
# ClickHouse's own HTTP statuses for the error codes a client is likely to meet.
_STATUS_BY_CODE = {
    62: 400,  # SYNTAX_ERROR
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    26: 400,  # CANNOT_PARSE_QUOTED_STRING
    36: 400,  # BAD_ARGUMENTS
    47: 400,  # UNKNOWN_IDENTIFIER
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    164: 403,  # READONLY
    452: 403,  # SETTING_CONSTRAINT_VIOLATION
    516: 403,  # AUTHENTICATION_FAILED
}
AUTH_FAILED = 516


@dataclass(frozen=True, slots=True)
class StoreUser:
    name: str
    password: str
    readonly: bool
    # A read-only user's profile, as a ClickHouse server's `readonly = 2` profile with
    # constraints: these settings apply first; a request may lower a number, not raise it,
    # and may not change a text setting.
    limits: tuple[tuple[str, str], ...] = ()


class QueryError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _decode_body(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "lz4":
        import lz4.frame  # installed with clickhouse-connect's lz4 support

        out: bytes = lz4.frame.decompress(data)
        return out
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise QueryError(36, f"Code: 36. DB::Exception: unsupported Content-Encoding {encoding!r}")


def engine_error(exc: Exception) -> QueryError:
    text = str(exc)
    start = text.find("Code: ")
    message = text[start:].strip() if start >= 0 else text.strip()
    found = _CODE.search(message)
    code = int(found.group(1)) if found else 1000
    if not found:
        message = f"Code: {code}. DB::Exception: {message}"
    return QueryError(code, message)


class ChdbHttpEngine:
    """Runs one HTTP request's statement on a fresh handle of the process's chDB engine."""

    def __init__(self, chdb_path: Path) -> None:
        self.connection_string = str(chdb_path)
        probe = chdb.connect(self.connection_string)
        try:
            row = probe.query("SELECT timezone(), version()", "TabSeparated").bytes()
        finally:
            probe.close()
        tz, version = row.decode().strip().split("\t")
        self.timezone, self.version = tz, version

    def execute(
        self,
        body: bytes,
        params: dict[str, str],
        user: StoreUser,
    ) -> tuple[bytes, str | None, dict[str, str]]:
        """(result bytes, output format or None for a statement without a result, summary)."""
        settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS}
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in settings.items() if not k.startswith("param_")}
        for name in settings:
            if not _NAME.match(name):
                raise QueryError(115, f"Code: 115. DB::Exception: Unknown setting {name!r}")
        if user.readonly:
            _check_constraints(dict(user.limits), settings)
            # The profile, then readonly = 2: reads and SET only, and `readonly` itself can
            # no longer change (the engine refuses), then what the request asks.
            settings = {**dict(user.limits), "readonly": "2", **settings}
        default_format = params.get("default_format", "TabSeparated")
        if not _NAME.match(default_format):
            raise QueryError(73, f"Code: 73. DB::Exception: Unknown format {default_format!r}")
        conn = chdb.connect(self.connection_string)
        try:
            database = params.get("database")
            if database:
                if not _NAME.match(database):
                    raise QueryError(81, f"Code: 81. DB::Exception: bad database {database!r}")
                self._run(conn, f"USE `{database}`", "TabSeparated")
            for name, value in settings.items():
                literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
                self._run(conn, f"SET {name} = {literal}", "TabSeparated")
            insert = _INSERT.match(body[:65536])
            if insert is not None:
                return self._insert(conn, insert, body[insert.end() :])
            sql = body.decode()
            trailing = _TRAILING_FORMAT.search(sql)
            # The engine's output format too: in `EXPLAIN ... FORMAT X` the clause may bind to
            # the explained statement, and the client parses what the header says.
            fmt = trailing.group(1) if trailing else default_format
            result = self._run(conn, sql, fmt, bind)
            out = result.bytes() or b""
            has_result = bool(out) or trailing is not None or _RESULT_STATEMENT.match(sql)
            return out, fmt if has_result else None, _summary(result, written=False)
        finally:
            conn.close()

    def _insert(
        self, conn: Any, statement: re.Match[bytes], data: bytes
    ) -> tuple[bytes, str | None, dict[str, str]]:
        target = statement.group(1).decode()
        fmt = statement.group(2).decode()
        if not data.strip():  # the data was in the statement (VALUES) or there is none
            result = self._run(conn, statement.group(0).decode(), "TabSeparated")
            return b"", None, _summary(result, written=True)
        # chDB reads insert data from a file (as clickhouse-connect's chdb backend does).
        fd, path = tempfile.mkstemp(suffix=".insert")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            infile = path.replace("\\", "\\\\").replace("'", "\\'")
            sql = f"{target} FROM INFILE '{infile}' FORMAT {fmt}"
            result = self._run(conn, sql, "TabSeparated")
        finally:
            os.unlink(path)
        return b"", None, _summary(result, written=True)

    @staticmethod
    def _run(conn: Any, sql: str, fmt: str, params: dict[str, str] | None = None) -> Any:
        try:
            return conn.query(sql, fmt, params=params or {})
        except Exception as exc:  # chDB raises its engine's exception text
            raise engine_error(exc) from exc


def _check_constraints(limits: dict[str, str], asked: dict[str, str]) -> None:
    for name, value in asked.items():
        cap = limits.get(name)
        if cap is None:
            continue
        try:
            ok = 0 < float(value) <= float(cap) if float(cap) > 0 else True
        except ValueError:
            ok = value == cap
        if not ok:
            raise QueryError(
                452,
                f"Code: 452. DB::Exception: Setting {name} shouldn't be greater than {cap} or "
                "changed for this user. (SETTING_CONSTRAINT_VIOLATION)",
            )


def _summary(result: Any, *, written: bool) -> dict[str, str]:
    try:
        rows, size = str(result.rows_read()), str(result.bytes_read())
        elapsed = str(int(result.elapsed() * 1_000_000_000))
    except Exception:  # statistics are optional
        return {}
    if written:
        return {"written_rows": rows, "written_bytes": size, "elapsed_ns": elapsed}
    return {"read_rows": rows, "read_bytes": size, "elapsed_ns": elapsed}


class _Handler(BaseHTTPRequestHandler):
    server: ClickHouseHttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects

    def log_message(self, format: str, *args: Any) -> None:
        pass  # structured logs only

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/ping/"):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        query_id = str(uuid.uuid4())
        try:
            body = self._read_body()
            if url.path not in ("", "/"):
                raise QueryError(
                    1000, f"Code: 1000. DB::Exception: no handler for {url.path!r} (/ and /ping)"
                )
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            query_id = params.get("query_id") or query_id
            user = self._authenticate(params)
            statement = params.get("query", "").encode()
            if statement and body:
                statement += b"\n" + body
            elif body:
                statement = body
            if not statement.strip():
                raise QueryError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            if self.command == "GET" and not user.readonly:  # ClickHouse: a GET is read-only
                params = {**params, "readonly": "1"}
            out, fmt, summary = self.server.engine.execute(statement, params, user)
        except QueryError as exc:
            status = _STATUS_BY_CODE.get(exc.code, 500)
            log.info("store_http.error", code=exc.code, status=status)
            self._send(
                status,
                f"{exc}\n".encode(),
                {
                    "Content-Type": "text/plain; charset=UTF-8",
                    "X-ClickHouse-Exception-Code": str(exc.code),
                    "X-ClickHouse-Query-Id": query_id,
                },
            )
            return
        headers = {
            "Content-Type": "application/octet-stream"
            if fmt in (None, "Native", "RowBinary", "Arrow", "ArrowStream", "Parquet")
            else "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(summary),
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Server-Display-Name": "defimon-chdb",
        }
        if fmt is not None:
            headers["X-ClickHouse-Format"] = fmt
        self._send(200, out, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            data = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
        try:
            return _decode_body(data, self.headers.get("Content-Encoding", ""))
        except QueryError:
            raise
        except Exception as exc:
            raise QueryError(
                36, f"Code: 36. DB::Exception: cannot decode the request body: {exc}"
            ) from exc

    def _authenticate(self, params: dict[str, str]) -> StoreUser:
        name = self.headers.get("X-ClickHouse-User") or params.get("user")
        password = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name = None
        user = self.server.users.get(name or "default")
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise QueryError(
                AUTH_FAILED,
                f"Code: 516. DB::Exception: {name or 'default'}: Authentication failed: password "
                "is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
            )
        return user

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ClickHouseHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], engine: ChdbHttpEngine, users: list[StoreUser]
    ) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.users = {u.name: u for u in users}
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> ClickHouseHttpServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="defimon-store-http", daemon=True
        )
        self._thread.start()
        log.info("store_http.listening", host=self.server_address[0], port=self.port)
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(10)


def store_users(
    writer: str,
    writer_password: str,
    analyst: str,
    analyst_password: str | None,
    analyst_limits: dict[str, int | float | str] | None = None,
) -> list[StoreUser]:
    """The writer, with `default` as another name for it when it has no password (so a URL
    without credentials works on loopback), and the read-only analyst if it has a password."""
    users = [StoreUser(writer, writer_password, readonly=False)]
    if not writer_password and writer != "default":
        users.append(StoreUser("default", "", readonly=False))
    if analyst_password is not None:
        limits = tuple((k, str(v)) for k, v in (analyst_limits or {}).items())
        users.append(StoreUser(analyst, analyst_password, readonly=True, limits=limits))
    return users

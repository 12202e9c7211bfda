"""Analyst SQL, the pure part: which statements may run, the limits, and how results are shaped.

A statement reaches the engine only after two checks on ClickHouse's own reading of it (see
`ports/analyst_runner.py`): `formatQuerySingleLine` (given the text as a *parameter*, so it
parses without running anything) turns it into one canonical statement with comments and
heredocs gone, or fails on a syntax error or a second statement; `EXPLAIN AST` of that canonical
text gives the tree checked here. The canonical text is what runs, so no quirk of a tokenizer
can make the checked text and the executed text differ.

Defence in depth: the query then runs on a handle that is `readonly = 1` with the limits set
before it (ClickHouse refuses writes, DDL, SET and SETTINGS there). readonly alone is not
enough on chDB: it still lets `file()` (the scalar function), `INTO OUTFILE` and the `python()`
table function through (checked), which is why the checks here refuse them by name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from schemas.errors import InvalidInput

FORMATS = ("json", "csv", "arrow", "parquet")
MAX_SQL_CHARS = 100_000
JSON_SAFE_INT = 2**53 - 1  # beyond this a JSON number loses digits in JavaScript and friends


class SqlRefused(InvalidInput):
    """The statement is not a read, or reaches outside the store."""


class SqlFailed(InvalidInput):
    """ClickHouse could not run the statement (syntax, unknown table or column, types)."""


class SqlLimitExceeded(InvalidInput):
    """ClickHouse stopped the statement at one of the analyst limits."""


class SqlTimeout(SqlLimitExceeded):
    """ClickHouse stopped the statement at the time limit."""


@dataclass(frozen=True, slots=True)
class SqlLimits:
    execution_seconds: float
    rows_to_read: int
    bytes_to_read: int
    result_rows: int
    result_bytes: int
    memory_bytes: int

    @classmethod
    def from_settings(cls, settings: Any) -> SqlLimits:
        return cls(
            execution_seconds=settings.sql_max_execution_seconds,
            rows_to_read=settings.sql_max_rows_to_read,
            bytes_to_read=settings.sql_max_bytes_to_read,
            result_rows=settings.sql_max_result_rows,
            result_bytes=settings.sql_max_result_bytes,
            memory_bytes=settings.sql_max_memory_bytes,
        )

    def clickhouse_settings(self) -> dict[str, int | float | str]:
        """The ClickHouse settings that enforce these limits (`readonly` is added by the store)."""
        return {
            "max_execution_time": self.execution_seconds,
            # Otherwise ClickHouse only estimates the run time after 10 s and may stop late.
            "timeout_before_checking_execution_speed": 0,
            "timeout_overflow_mode": "throw",
            "max_rows_to_read": self.rows_to_read,
            "max_bytes_to_read": self.bytes_to_read,
            "read_overflow_mode": "throw",
            "max_result_rows": self.result_rows,
            "max_result_bytes": self.result_bytes,
            # `break` would return a silently truncated result.
            "result_overflow_mode": "throw",
            "max_memory_usage": self.memory_bytes,
        }


# ---------------------------------------------------------------------------------------------
# Statement kinds, by the canonical text's first word.

ALLOWED_LEADS = frozenset({"SELECT", "WITH", "DESCRIBE", "DESC", "SHOW", "EXPLAIN", "EXISTS", "("})
_KINDS_TEXT = "SELECT, WITH … SELECT, DESCRIBE, SHOW and EXPLAIN"
_LEAD_REASONS = {
    **dict.fromkeys(
        ("INSERT", "ALTER", "DELETE", "UPDATE", "TRUNCATE", "OPTIMIZE", "REPLACE", "UPSERT"),
        "writes to the store",
    ),
    **dict.fromkeys(
        ("CREATE", "DROP", "ATTACH", "DETACH", "RENAME", "EXCHANGE", "UNDROP", "MOVE"),
        "changes the schema",
    ),
    **dict.fromkeys(("BACKUP", "RESTORE"), "reads or writes files outside the store"),
    "SYSTEM": "controls the engine",
    "SET": "changes settings; the limits are fixed by the server",
    **dict.fromkeys(("GRANT", "REVOKE"), "changes access control"),
    "KILL": "stops other queries",
    "USE": "changes the session's database; name tables in full, e.g. defimon.pools",
    "CHECK": "reads table files outside a query",
}

# AST root nodes (first word of EXPLAIN AST's first line) that are reads.
ALLOWED_ROOTS = frozenset(
    {
        "SelectWithUnionQuery",
        "DescribeQuery",
        "ShowTables",
        "ShowColumns",
        "ShowCreateTableQuery",
        "ExistsTableQuery",
        "Explain",
    }
)
# Query nodes allowed anywhere in the tree (subqueries, UNION, INTERSECT/EXCEPT, EXPLAIN's body).
ALLOWED_QUERY_NODES = ALLOWED_ROOTS | {"SelectQuery", "SelectIntersectExceptQuery"}
# Nodes named *Query that are clauses, not statements.
_CLAUSE_NODES = frozenset({"TablesInSelectQuery"})
ALLOWED_EXPLAINS = frozenset(
    {
        "EXPLAIN",
        "EXPLAIN AST",
        "EXPLAIN SYNTAX",
        "EXPLAIN QUERY TREE",
        "EXPLAIN PLAN",
        "EXPLAIN PIPELINE",
        "EXPLAIN ESTIMATE",
    }
)

# Table functions that only compute (names are case-sensitive in ClickHouse). Every other one
# is refused: most reach files, processes or the network, or (chDB) the host's Python objects.
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateSeries",
        "primes",
        "values",
        "view",
        "generateRandom",
    }
)
_REACHING = re.compile(
    r"^(file|url|s3|gcs|oss|cosn|hdfs|azure|remote|cluster|mysql|postgresql|jdbc|odbc|mongodb|"
    r"redis|sqlite|executable|input|deltalake|iceberg|hudi|paimon|python|arrowstream|dictionary|"
    r"bigquery|ytsaurus|filesystem)",
    re.IGNORECASE,
)
# Scalar functions refused whatever their place: they read files, sleep, write the server log,
# or expose the server's configuration and memory (lower-cased names; dict* by prefix).
DENIED_FUNCTIONS = {
    "file": "reads files on the server",
    "sleep": "only holds a worker",
    "sleepeachrow": "only holds a worker",
    "logtrace": "writes to the server log",
    "getmacro": "exposes the server's configuration",
    "getserversetting": "exposes the server's configuration",
    "getclienthttpheader": "exposes request headers",
    "filesystemavailable": "exposes the server's disks",
    "filesystemcapacity": "exposes the server's disks",
    "filesystemunreserved": "exposes the server's disks",
    "addresstoline": "exposes the server's memory",
    "addresstolinewithinlines": "exposes the server's memory",
    "addresstosymbol": "exposes the server's memory",
    "demangle": "exposes the server's memory",
    "catboostevaluate": "loads model files",
    "modelevaluate": "loads model files",
}


# ---------------------------------------------------------------------------------------------
# A tokenizer for the canonical text (single-quoted strings, quoted identifiers, no comments).


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word | string | quoted | number | punct
    text: str


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")


def tokenize(text: str) -> list[Token]:
    """Words, strings, quoted identifiers and punctuation. Comments are skipped too, so a text
    that did not come from formatQuery still reads sensibly."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == "\\":
                    j += 2
                elif text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:  # a doubled quote stays inside
                        j += 2
                    else:
                        break
                else:
                    j += 1
            out.append(Token("string" if ch == "'" else "quoted", text[i : j + 1]))
            i = j + 1
        elif m := _WORD.match(text, i):
            out.append(Token("word", m.group()))
            i = m.end()
        elif m := _NUMBER.match(text, i):
            out.append(Token("number", m.group()))
            i = m.end()
        else:
            out.append(Token("punct", ch))
            i += 1
    return out


def check_text(canonical: str) -> None:
    """The statement kind and the clauses that leave the store, from the canonical text."""
    toks = tokenize(canonical)
    if not toks:
        raise SqlRefused("refused: the statement is empty")
    lead = toks[0].text.upper() if toks[0].kind in ("word", "punct") else toks[0].text
    if lead not in ALLOWED_LEADS:
        reason = _LEAD_REASONS.get(lead)
        if reason:
            raise SqlRefused(
                f"refused: {lead} {reason}; analyst SQL is read-only ({_KINDS_TEXT} only)"
            )
        raise SqlRefused(f"refused: only {_KINDS_TEXT} are allowed, not {lead}")
    for a, b in itertools.pairwise(toks):
        if a.kind == b.kind == "word" and a.text.upper() == "INTO" and b.text.upper() == "OUTFILE":
            raise SqlRefused("refused: INTO OUTFILE writes a file on the server")
    for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
        # `SETTINGS name =` is only ever the clause (a column called settings takes AS).
        if a.kind == b.kind == "word" and a.text.upper() == "SETTINGS" and c.text == "=":
            raise SqlRefused(_SETTINGS_REASON)
    if len(toks) >= 2 and toks[-2].kind == "word" and toks[-2].text.upper() == "FORMAT":
        raise SqlRefused(_FORMAT_REASON)


_FORMAT_REASON = (
    "refused: FORMAT clauses are not allowed; choose json, csv, arrow or parquet "
    "with the request's `format` field"
)
_SETTINGS_REASON = "refused: SETTINGS clauses are not allowed; the limits are fixed by the server"


# ---------------------------------------------------------------------------------------------
# The EXPLAIN AST tree.


@dataclass(frozen=True, slots=True)
class AstNode:
    depth: int
    kind: str  # SelectQuery, Function, TableIdentifier, Literal, ...
    rest: str  # what follows the kind on the line, e.g. "file (children 1)"
    parent: str | None  # the parent node's kind

    @property
    def name(self) -> str:
        """A function's or identifier's name (the first word after the kind)."""
        return self.rest.split(" ", 1)[0] if self.rest else ""


def parse_ast(lines: Sequence[str]) -> list[AstNode]:
    """EXPLAIN AST's text: one node a line, one space of indent per level."""
    nodes: list[AstNode] = []
    stack: list[str] = []  # kinds of the current ancestors, by depth
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, rest = line.strip().partition(" ")
        del stack[depth:]
        parent = stack[depth - 1] if 0 < depth <= len(stack) else None
        nodes.append(AstNode(depth, kind, rest.strip(), parent))
        stack.append(kind)
    return nodes


def check_ast(nodes: Sequence[AstNode]) -> str:
    """Refuse anything but one read; returns the root kind. `nodes` come from
    `EXPLAIN AST <canonical>` run through a client that appends `FORMAT Native`."""
    roots = [n for n in nodes if n.depth == 0]
    if len(roots) != 1:
        raise SqlRefused("refused: one statement at a time")
    root = roots[0]
    if root.kind not in ALLOWED_ROOTS:
        raise SqlRefused(f"refused: only {_KINDS_TEXT} are allowed ({root.kind} is not)")
    if root.kind == "Explain":
        explain = root.rest.split(" (children", 1)[0].strip()
        if explain not in ALLOWED_EXPLAINS:
            raise SqlRefused(f"refused: {explain} is not allowed")
    for node in nodes:
        if (
            node.kind.endswith("Query")
            and node.kind not in ALLOWED_QUERY_NODES
            and node.kind not in _CLAUSE_NODES
        ):
            raise SqlRefused(f"refused: only reads are allowed ({node.kind} is not)")
        if node.kind == "Set":
            raise SqlRefused(_SETTINGS_REASON)
        if node.depth == 1 and root.kind in ("SelectWithUnionQuery", "Explain"):
            # A query's own trailing clauses hang off the root: the output file, the format.
            if node.kind == "Literal":
                raise SqlRefused("refused: INTO OUTFILE writes a file on the server")
            if node.kind == "Identifier" and node.name != "Native":
                raise SqlRefused(_FORMAT_REASON)
        if node.kind == "Function":
            _check_function(node)
    return root.kind


def _check_function(node: AstNode) -> None:
    name = node.name
    if node.parent == "TableExpression":
        if name in SAFE_TABLE_FUNCTIONS:
            return
        if _REACHING.match(name):
            raise SqlRefused(
                f"refused: table function {name}() reaches files, processes, the network "
                "or the host outside the store"
            )
        raise SqlRefused(
            f"refused: table function {name}() is not allowed "
            f"(allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
        )
    lowered = name.lower()
    reason = DENIED_FUNCTIONS.get(lowered)
    if reason is None and lowered.startswith("dict"):
        reason = "reads dictionaries, whose sources may reach outside the store"
    if reason is not None:
        raise SqlRefused(f"refused: {name}() {reason}")


# ---------------------------------------------------------------------------------------------
# ClickHouse errors, for people.

_VERSION = re.compile(r"\s*\(version [^)]*\)(\s*\(official build\))?")
_PREFIX = re.compile(r"(?:Code: \d+\. )?(?:DB::Exception: )+")
_REPEATED_NAME = re.compile(r"(\([A-Z][A-Z0-9_]+\))(?:\.? \1)+")
_SCOPE = re.compile(r":? In scope .*$", re.DOTALL)
TIMEOUT_CODES = frozenset({159})  # TIMEOUT_EXCEEDED
LIMIT_CODES = frozenset({158, 160, 241, 307, 396})  # rows, speed, memory, bytes, result
READONLY_CODES = frozenset({164})
SYNTAX_CODES = frozenset({62})


def trim_error(message: str, limit: int = 600) -> str:
    """ClickHouse's message without the code prefix, version trailer, stack trace or the
    wrapper query of formatQuery, cut to `limit` characters."""
    text = message.split("Stack trace", 1)[0]
    text = _VERSION.sub("", text.strip())
    text = _PREFIX.sub("", text)
    text = _REPEATED_NAME.sub(r"\1", text)
    names = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", text)
    text = _SCOPE.sub("", text).strip()
    if names and f"({names[-1]})" not in text:
        text = f"{text} ({names[-1]})"  # the scope went, the error's name stays
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_failure(code: int, message: str, limits: SqlLimits) -> InvalidInput:
    """The caller's error for a ClickHouse refusal of an analyst query."""
    text = trim_error(message)
    if code in TIMEOUT_CODES:
        return SqlTimeout(
            f"stopped: the query ran longer than the {limits.execution_seconds:g} s limit ({text})"
        )
    if code in LIMIT_CODES:
        return SqlLimitExceeded(f"stopped by a limit: {text}")
    if code in READONLY_CODES:
        return SqlRefused(f"refused by the engine, which is read-only here: {text}")
    if code in SYNTAX_CODES and "Multi-statements" in text:
        return SqlRefused("refused: one statement at a time (multi-statements are not allowed)")
    return SqlFailed(text)


# ---------------------------------------------------------------------------------------------
# Results.


def json_value(value: Any) -> Any:
    """A value JSON can carry without losing anything: big integers and decimals as strings."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -JSON_SAFE_INT <= value <= JSON_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple | set):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return str(value)


def json_result(
    names: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    rows_read: int | None,
    elapsed_ms: float,
) -> dict[str, Any]:
    # Some chDB versions hand back naive datetimes for zoned columns: put the zone back.
    zones = [_zone(t) for t in types]
    return {
        "columns": [{"name": n, "type": t} for n, t in zip(names, types, strict=True)],
        "rows": [
            [
                json_value(
                    v.replace(tzinfo=ZoneInfo(z))
                    if z and isinstance(v, dt.datetime) and v.tzinfo is None
                    else v
                )
                for v, z in zip(row, zones, strict=True)
            ]
            for row in rows
        ],
        "rows_read": rows_read,
        "elapsed_ms": round(elapsed_ms, 3),
    }


def _zone(ch_type: str) -> str | None:
    found = re.search(r"DateTime(?:64)?\((?:\d+,\s*)?'([^']+)'\)", ch_type)
    return found.group(1) if found else None


_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")
_INTS: dict[str, pa.DataType] = {
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "String": pa.string(),
    "Date": pa.date32(),
    "Date32": pa.date32(),
}
_WIDE = frozenset({"UInt128", "UInt256", "Int128", "Int256"})
_TIME_UNITS = {0: "s", 3: "ms", 6: "us", 9: "ns"}


def arrow_type(ch_type: str) -> tuple[pa.DataType | None, bool]:
    """The Arrow type for a ClickHouse type, and whether values become strings first.
    None: let pyarrow infer it from JSON-safe values (arrays, tuples, maps, ...)."""
    while m := _WRAPPER.match(ch_type):
        ch_type = m.group(2)
    if ch_type in _INTS:
        return _INTS[ch_type], False
    # 128/256-bit integers have no Arrow type (ClickHouse's own output gives opaque bytes):
    # decimal strings keep every digit, as in the JSON output.
    if ch_type in _WIDE or ch_type.startswith(("Decimal", "UUID", "IPv", "Enum")):
        return pa.string(), True
    if ch_type.startswith("FixedString"):
        return pa.binary(), False
    if ch_type.startswith("DateTime64"):
        args = ch_type[len("DateTime64(") : -1].split(",", 1)
        unit = _TIME_UNITS.get(int(args[0]), "ns")
        tz = args[1].strip().strip("'") if len(args) > 1 else "UTC"
        return pa.timestamp(unit, tz=tz), False
    if ch_type.startswith("DateTime"):
        tz = ch_type[len("DateTime(") : -1].strip("'") if "(" in ch_type else "UTC"
        return pa.timestamp("s", tz=tz), False
    return None, False


def arrow_table(
    names: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values, ch_type in zip(columns, types, strict=True):
        typ, stringify = arrow_type(ch_type)
        if stringify:
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        elif typ is not None:
            arrays.append(pa.array(list(values), typ))
        else:
            safe = [json_value(v) for v in values]
            try:
                arrays.append(pa.array(safe))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Mixed shapes Arrow cannot type: each value as its JSON text.
                arrays.append(pa.array([orjson.dumps(v).decode() for v in safe], pa.string()))
    return pa.Table.from_arrays(arrays, names=list(_unique(names)))


def _unique(names: Sequence[str]) -> list[str]:
    """Arrow and Parquet readers expect distinct column names; SQL allows repeats."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out

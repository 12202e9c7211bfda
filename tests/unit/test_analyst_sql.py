"""The pure half of analyst SQL: statement checks on ClickHouse's own AST text, errors, values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from ports.analyst_sql import (
    SqlFailed,
    SqlLimitExceeded,
    SqlLimits,
    SqlRefused,
    SqlTimeout,
    arrow_table,
    check_ast,
    check_text,
    classify_failure,
    json_result,
    json_value,
    parse_ast,
    tokenize,
    trim_error,
)

LIMITS = SqlLimits(2, 1000, 10**6, 10, 10**6, 2**20)

# EXPLAIN AST output as chDB 26.9 prints it (through a client that appends FORMAT Native).
SELECT_FILE = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function file (children 1)
       ExpressionList (children 1)
        Literal '/etc/passwd'
 Identifier Native"""

SELECT_NUMBERS = SELECT_FILE.replace("Function file", "Function numbers").replace(
    "Literal '/etc/passwd'", "Literal UInt64_3"
)

SUBQUERY_SETTINGS = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier x
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Subquery (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          ExpressionList (children 1)
           Literal UInt64_1 (alias x)
          Set
 Identifier Native"""

OUTFILE = """SelectWithUnionQuery (children 3)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal '/tmp/x'
 Identifier CSV"""

EXPLAIN_INSERT = """Explain EXPLAIN AST (children 1)
 InsertQuery   (children 3)
  Identifier defimon
  Identifier t
  SelectWithUnionQuery (children 1)
   ExpressionList (children 1)
    SelectQuery (children 1)
     ExpressionList (children 1)
      Literal UInt64_1"""

SCALAR_FILE = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function file (children 1)
     ExpressionList (children 1)
      Literal '/etc/hostname'
 Identifier Native"""


def ast(text: str) -> str:
    return check_ast(parse_ast(text.splitlines()))


def test_reads_pass_and_say_their_kind() -> None:
    assert ast(SELECT_NUMBERS) == "SelectWithUnionQuery"
    assert ast("ShowTables (children 2)\n Identifier defimon\n Identifier Native") == "ShowTables"
    nodes = parse_ast(SELECT_FILE.splitlines())
    function = next(n for n in nodes if n.kind == "Function")
    assert (function.name, function.parent, function.depth) == ("file", "TableExpression", 6)


@pytest.mark.parametrize(
    ("tree", "reason"),
    [
        (SELECT_FILE, "table function file() reaches files"),
        (SELECT_FILE.replace("Function file", "Function Python"), "python"),
        (SELECT_FILE.replace("Function file", "Function merge"), "merge() is not allowed"),
        (SUBQUERY_SETTINGS, "SETTINGS clauses are not allowed"),
        (OUTFILE, "INTO OUTFILE"),
        (SELECT_NUMBERS.replace("Identifier Native", "Identifier JSON"), "FORMAT clauses"),
        (EXPLAIN_INSERT, "InsertQuery is not"),
        (SCALAR_FILE, "file() reads files"),
        (SCALAR_FILE.replace("Function file", "Function dictGetString"), "dictGetString()"),
        ("DropQuery defimon t (children 3)\n Identifier defimon", "DropQuery is not"),
        ("Set", "Set is not"),
        ("SelectWithUnionQuery (children 1)\nSelectWithUnionQuery (children 1)", "one statement"),
    ],
)
def test_refusals_name_the_reason(tree: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match="refused") as caught:
        ast(tree)
    assert reason.lower() in str(caught.value).lower()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("INSERT INTO defimon.t FORMAT Values", "INSERT writes to the store"),
        ("DROP TABLE defimon.t", "DROP changes the schema"),
        ("SYSTEM FLUSH LOGS", "SYSTEM controls the engine"),
        ("SET readonly = 0", "SET changes settings"),
        ("KILL QUERY WHERE 1", "KILL stops other queries"),
        ("VACUUM", "only SELECT"),
        ("SELECT 1 INTO OUTFILE 'x'", "INTO OUTFILE"),
        ("SELECT 1 FORMAT CSV", "FORMAT clauses"),
        ("SELECT 1 SETTINGS max_threads = 1", "SETTINGS clauses"),
        ("SELECT x FROM (SELECT 1 AS x SETTINGS readonly = 0)", "SETTINGS clauses"),
    ],
)
def test_canonical_text_checks(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as caught:
        check_text(sql)
    assert reason in str(caught.value)


def test_words_that_only_look_like_clauses_pass() -> None:
    check_text("SELECT 1 AS settings, 2 AS format, 3 AS into FROM defimon.t")
    check_text("SELECT name FROM system.settings WHERE name = 'x'")
    check_text("SELECT 'INTO OUTFILE', 'FORMAT CSV' AS s")
    check_text("(SELECT 1) UNION ALL (SELECT 2)")


def test_tokenizer_keeps_strings_and_identifiers_whole() -> None:
    toks = tokenize("SELECT 'a\\'; b', `x;y`, \"z\" -- c ; d\n/* ; */ 1")
    assert [t.text for t in toks] == ["SELECT", "'a\\'; b'", ",", "`x;y`", ",", '"z"', "1"]


def test_clickhouse_errors_are_trimmed_and_classified() -> None:
    raw = (
        "Code: 60. DB::Exception: Unknown table expression identifier 'defimon.x'. "
        "In scope SELECT * FROM defimon.x. (UNKNOWN_TABLE) (version 26.9.2.1)\nStack trace: ..."
    )
    assert trim_error(raw) == "Unknown table expression identifier 'defimon.x'. (UNKNOWN_TABLE)"
    nested = (
        "Code: 164. DB::Exception: Code: 164. DB::Exception: Cannot modify 'readonly' "
        "setting in readonly mode. (READONLY) (version 26.9.2.1). (READONLY)"
    )
    assert trim_error(nested) == "Cannot modify 'readonly' setting in readonly mode. (READONLY)"
    assert len(trim_error("x" * 5000)) == 600
    assert isinstance(classify_failure(159, "Timeout exceeded", LIMITS), SqlTimeout)
    assert "2 s limit" in str(classify_failure(159, "Timeout exceeded", LIMITS))
    assert isinstance(classify_failure(158, "Limit for rows", LIMITS), SqlLimitExceeded)
    assert isinstance(classify_failure(241, "memory limit", LIMITS), SqlLimitExceeded)
    assert isinstance(classify_failure(164, "readonly", LIMITS), SqlRefused)
    multi = "Syntax error (Multi-statements are not allowed): failed at position 9"
    assert "one statement" in str(classify_failure(62, multi, LIMITS))
    assert isinstance(classify_failure(62, "Syntax error: failed", LIMITS), SqlFailed)


def test_values_keep_every_digit_in_json() -> None:
    assert json_value(2**53 - 1) == 2**53 - 1
    assert json_value(2**53) == str(2**53)
    assert json_value(-(2**255)) == str(-(2**255))
    assert json_value(True) is True
    assert json_value(Decimal("1.000000000000000001")) == "1.000000000000000001"
    assert json_value(float("nan")) is None
    assert json_value(b"\xff") == "0xff" and json_value(b"ok") == "ok"
    assert json_value([2**64, (1, "a")]) == [str(2**64), [1, "a"]]
    # What some chDB versions return for a zoned column.
    naive = dt.datetime(2026, 1, 1, 12, 0)  # noqa: DTZ001
    result = json_result(["t", "n"], ["DateTime64(3, 'UTC')", "UInt256"], [(naive, 2**200)], 1, 0.5)
    assert result["rows"] == [["2026-01-01T12:00:00+00:00", str(2**200)]]
    assert result["columns"] == [
        {"name": "t", "type": "DateTime64(3, 'UTC')"},
        {"name": "n", "type": "UInt256"},
    ]


def test_arrow_tables_type_columns_from_clickhouse_types() -> None:
    table = arrow_table(
        ["a", "b", "c", "d", "e", "a"],
        [
            "UInt256",
            "Nullable(UInt64)",
            "DateTime64(3, 'UTC')",
            "Array(UInt256)",
            "LowCardinality(String)",
            "Int32",
        ],
        [
            (2**256 - 1, 2**64 - 1, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), [2**100], "x", -1),
            (0, None, dt.datetime(2026, 1, 2, tzinfo=dt.UTC), [], "y", 2),
        ],
    )
    assert table.schema.types == [
        pa.string(),
        pa.uint64(),
        pa.timestamp("ms", tz="UTC"),
        pa.list_(pa.string()),
        pa.string(),
        pa.int32(),
    ]
    assert table.column_names == ["a", "b", "c", "d", "e", "a_1"]
    assert table.column("a").to_pylist() == [str(2**256 - 1), "0"]
    assert table.column("b").to_pylist() == [2**64 - 1, None]
    empty = arrow_table(["a"], ["UInt256"], [])
    assert empty.num_rows == 0 and empty.schema.types == [pa.string()]

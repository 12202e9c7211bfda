"""The tables' two declarations agree: the DDL (sql/*.sql for the core tables, each
protocol's protocols/<name>/tables.sql) and the column lists the writers
insert with (flows/rows.py COLUMNS for the flow's tables: its CORE_COLUMNS and each protocol's
TABLES, protocols/<name>/rows.py; the alert store's and the migration's own lists for the rest).

A small parser reads each CREATE TABLE's column list and each ALTER TABLE ... ADD COLUMN, as
the store applies them (ports/store.py split_statements, in file order). Order does not have
to match: every insert names its columns (Store.insert passes column_names; the retraction
statements name them too) and every read takes rows by name (Store.dicts), so what must agree
is the set. A DDL column no writer fills must have a default; for the flow's tables that is
exactly `is_deleted`, which only the retraction writes.

The parser itself is checked against chDB's own view of the migrated schema (system.columns).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from api.alerts import store as alert_store
from flows.rows import COLUMNS, CORE_COLUMNS, RETRACTABLE
from ports.store import Store, migration_files, split_statements
from protocols.registry import PLUGINS

ROOT = Path(__file__).resolve().parents[2]
_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS\s+([\w.]+)\s*\(", re.IGNORECASE)
_ADD = re.compile(
    r"^ALTER TABLE\s+([\w.]+)\s+ADD COLUMN(?:\s+IF NOT EXISTS)?\s+(\w+)\s+(.+?)"
    r"(?:\s+(AFTER)\s+(\w+)|\s+(FIRST))?$",
    re.IGNORECASE | re.DOTALL,
)
# Elements of a CREATE TABLE's list that are not columns.
_NOT_COLUMNS = ("INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY KEY", "STATISTICS")
_DEFAULT_KINDS = ("DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default_kind: str  # "" when the column has no default expression


def _without_comments(sql: str) -> str:
    # No string literal in sql/ holds "--"; comments can hold commas and parentheses.
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _top_level(body: str) -> Iterator[str]:
    """The comma-separated elements of a parenthesised list, nested parentheses kept whole."""
    depth, start, quoted = 0, 0, False
    for i, ch in enumerate(body):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield body[start:i].strip()
            start = i + 1
    yield body[start:].strip()


def _column(element: str) -> Column:
    name, rest = element.split(None, 1)
    kind = ""
    # The type may hold parentheses (Nullable(Float64), DateTime64(3, 'UTC')); the default
    # kind is the first keyword after it at the top level.
    depth = 0
    words = re.split(r"(\s+)", rest)
    type_words: list[str] = []
    for word in words:
        depth += word.count("(") - word.count(")")
        if depth == 0 and word.upper() in _DEFAULT_KINDS:
            kind = word.upper()
            break
        type_words.append(word)
    return Column(name.strip("`"), "".join(type_words).strip(), kind)


def parse_schema(files: list[Path]) -> dict[str, list[Column]]:
    """Every table's columns after applying `files` in order, as ClickHouse would."""
    tables: dict[str, list[Column]] = {}
    for path in files:
        for statement in split_statements(path.read_text()):
            sql = _without_comments(statement).strip()
            created = _CREATE.match(sql)
            if created:
                name = created.group(1)
                opened = created.end() - 1
                depth = 0
                for end in range(opened, len(sql)):
                    depth += {"(": 1, ")": -1}.get(sql[end], 0)
                    if depth == 0:
                        break
                elements = _top_level(sql[opened + 1 : end])
                columns = [
                    _column(e) for e in elements if e and not e.upper().startswith(_NOT_COLUMNS)
                ]
                # IF NOT EXISTS: a second CREATE of the same table changes nothing.
                tables.setdefault(name, columns)
                continue
            added = _ADD.match(sql)
            if added:
                name, column, rest, after, after_column, first = added.groups()
                columns = tables[name]
                if any(c.name == column for c in columns):
                    continue  # IF NOT EXISTS
                new = _column(f"{column} {rest}")
                if first:
                    columns.insert(0, new)
                elif after:
                    at = [c.name for c in columns].index(after_column)
                    columns.insert(at + 1, new)
                else:
                    columns.append(new)
                continue
            assert sql.upper().startswith("CREATE DATABASE"), f"{path.name}: unparsed {sql[:60]}"
    return tables


SCHEMA = parse_schema(migration_files())


def _migrate_columns() -> tuple[str, ...]:
    """The columns Store.migrate inserts into defimon.schema_info, read from its source."""
    tree = ast.parse((ROOT / "ports" / "store.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "insert"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "defimon.schema_info"
        ):
            names = node.args[1]
            assert isinstance(names, ast.Tuple)
            return tuple(ast.literal_eval(e) for e in names.elts)
    raise AssertionError("Store.migrate no longer inserts into defimon.schema_info")


# Tables outside COLUMNS: the writer, and the columns it inserts.
WRITTEN_ELSEWHERE: dict[str, tuple[str, tuple[str, ...]]] = {
    "defimon.schema_info": ("ports.store.Store.migrate", _migrate_columns()),
    "defimon.alert_rules": ("api.alerts.store.AlertStore (RULE_COLUMNS)", alert_store.RULE_COLUMNS),
    "defimon.alerts": ("api.alerts.store.AlertStore (ALERT_COLUMNS)", alert_store.ALERT_COLUMNS),
    "defimon.alert_deliveries": (
        "api.alerts.store.AlertStore (DELIVERY_COLUMNS)",
        alert_store.DELIVERY_COLUMNS,
    ),
    "defimon.alert_states": (
        "api.alerts.store.AlertStore (STATE_COLUMNS)",
        alert_store.STATE_COLUMNS,
    ),
}


def test_the_parser_reads_the_real_syntax() -> None:
    windows = {c.name: c for c in SCHEMA["defimon.position_windows"]}
    # An INDEX line and comments with parentheses are not columns.
    assert "INDEX" not in windows and "owner_idx" not in windows
    assert windows["hf_open"] == Column("hf_open", "Nullable(Float64)", "")
    assert windows["is_deleted"] == Column("is_deleted", "UInt8", "DEFAULT")
    versions = [c.name for c in SCHEMA["defimon.position_versions"]]
    assert "PROJECTION" not in versions and "by_owner" not in versions
    # ALTER ... ADD COLUMN appends, after is_deleted.
    assert versions[-5:] == [
        "is_deleted",
        "fee_inside_last0",
        "fee_inside_last1",
        "tokens_owed0",
        "tokens_owed1",
    ]
    reserves = {c.name: c for c in SCHEMA["defimon.aave_reserves"]}
    assert reserves["reserve_id"] == Column("reserve_id", "Int16", "DEFAULT")
    blocks = SCHEMA["defimon.blocks"]
    assert blocks[4] == Column("block_time", "DateTime64(3, 'UTC')", "")


def test_the_parser_agrees_with_the_migrated_store(tmp_path: Path) -> None:
    store = Store.connect(data_dir=tmp_path)
    try:
        store.migrate()
        rows = store.rows(
            "SELECT table, name, type, default_kind FROM system.columns "
            "WHERE database = 'defimon' ORDER BY table, position"
        )
    finally:
        store.close()
    live: dict[str, list[Column]] = {}
    for table, name, type_, kind in rows:
        live.setdefault(f"defimon.{table}", []).append(Column(name, type_, kind))
    assert sorted(live) == sorted(SCHEMA)
    for table, columns in SCHEMA.items():
        assert [(c.name, c.default_kind) for c in columns] == [
            (c.name, c.default_kind) for c in live[table]
        ], table
        # Types as written, but for the spelling ClickHouse normalises (quotes, spaces).
        assert [c.type.replace(" ", "") for c in columns] == [
            c.type.replace(" ", "") for c in live[table]
        ], table


def test_every_table_has_one_writer() -> None:
    assert not set(COLUMNS) & set(WRITTEN_ELSEWHERE)
    assert sorted(set(COLUMNS) | set(WRITTEN_ELSEWHERE)) == sorted(SCHEMA)


def test_columns_are_the_core_tables_and_each_protocols_own() -> None:
    declared: dict[str, str] = dict.fromkeys(CORE_COLUMNS, "core")
    for plugin in PLUGINS:
        assert plugin.tables, f"{plugin.name} declares no table"
        for table, columns in plugin.tables.items():
            assert table not in declared, f"{table}: {plugin.name} and {declared[table]}"
            declared[table] = plugin.name
            assert COLUMNS[table] is columns, table  # the protocol's own tuple, in its order
    assert sorted(declared) == sorted(COLUMNS)
    for table, columns in CORE_COLUMNS.items():
        assert COLUMNS[table] is columns, table
    # A protocol with tables has a builder for them; each builder's tables are its own
    # (checked row by row in test_rows.py).
    for plugin in PLUGINS:
        assert plugin.market_rows is not None or plugin.shard_rows is not None, plugin.name


def test_the_flows_columns_are_the_ddls_but_is_deleted() -> None:
    for table, columns in COLUMNS.items():
        assert len(set(columns)) == len(columns), f"{table}: a column named twice"
        ddl = {c.name: c for c in SCHEMA[table]}
        assert set(columns) <= set(ddl), f"{table}: {set(columns) - set(ddl)} not in the DDL"
        unwritten = set(ddl) - set(columns)
        if table in RETRACTABLE:
            # The retraction writes is_deleted = 1; rows leave it at its default 0.
            assert unwritten == {"is_deleted"}, table
            assert ddl["is_deleted"].default_kind == "DEFAULT"
        else:
            assert unwritten == set(), table  # pools, tokens: metadata, never retracted
        assert "version" in columns, table  # ReplacingMergeTree(version ...)


def test_tables_written_elsewhere_match_their_writers() -> None:
    for table, (writer, columns) in WRITTEN_ELSEWHERE.items():
        ddl = {c.name: c for c in SCHEMA[table]}
        assert len(set(columns)) == len(columns), writer
        assert set(columns) <= set(ddl), f"{writer}: {set(columns) - set(ddl)} not in {table}"
        for name in set(ddl) - set(columns):
            assert ddl[name].default_kind, f"{table}.{name}: {writer} leaves it without a default"

"""Time travel's one read ("each key's latest row at or before block N") at 10,000,000 versions,
in the forms ClickHouse offers, side by side in one run on one chDB store.

The table is the real defimon.account_versions (the store's own migrations), filled with
INSERT ... SELECT from numbers(): 500,000 (account, asset) keys of 100,000 wallets in 3 pools,
20 versions each at random blocks in 1..1,000,000 and log indexes, then 1% of them retracted
the way a reorg retracts (the same sorting key again, is_deleted = 1, a higher version). Every
form must return the same rows as `FINAL ... LIMIT 1 BY` (checked before timing) for:

- `time_travel_wallet_read`: one wallet's portfolio-sized read (5 keys, ~100 versions);
- `time_travel_market_read`: a whole-market read (every key of one pool, ~3,300,000 versions).

Rounds interleave the forms, so whatever else shares the cores affects them alike. One JSON
line per read and form: p50 (and p99 for the wallet read) in milliseconds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import emit, percentile
from ports.store import Store
from protocols.read_side import latest_rows

VERSIONS = 10_000_000
BLOCKS = 1_000_000
WALLET_ROUNDS = 200
MARKET_ROUNDS = 3

TABLE = "account_versions"
COLUMNS = (
    "account_id, pool, owner, asset, emode, scaled_supply, scaled_variable_debt, "
    "stable_principal, stable_rate, stable_updated, collateral, block_number, log_index"
)
BY = "account_id, asset"
SORTING_KEY = "chain_id, owner, account_id, asset, block_number, log_index, block_hash"
NEWEST = f"{BY}, block_number DESC, log_index DESC"
BASE = "chain_id = {chain:UInt64}{where} AND block_number <= {block:UInt64}"

# Each key: (account k // 5, asset k % 5); wallet and account are one; pools by account.
_FILL = f"""
INSERT INTO defimon.account_versions
SELECT 1, concat('acct', toString(intDiv(k, 5))), 'aave_v3',
       concat('pool', toString(modulo(intDiv(k, 5), 3))),
       concat('0xwallet', toString(intDiv(k, 5))),
       concat('0xasset', toString(modulo(k, 5))), b, toUInt32(modulo(cityHash64(number), 300)),
       concat('0xh', toString(b)), toDateTime64(b, 3, 'UTC'), '', 'Supply', 0,
       toUInt256(number), toUInt256(0), toUInt256(0), toUInt256(0), 0, 1, number, 0
FROM (SELECT number, modulo(number, {{keys:UInt64}}) AS k,
             1 + modulo(cityHash64(number, 1), {BLOCKS}) AS b FROM numbers({{versions:UInt64}}))
"""
# A reorg's retraction: the same sorting key, is_deleted = 1, a higher version. (Staged in a
# plain table: in INSERT ... SELECT on the same table, the REPLACE aliases would shadow the
# columns in WHERE.)
_RETRACT = (
    "INSERT INTO defimon.bench_retractions SELECT * REPLACE (version + {versions:UInt64} "
    "AS version, toUInt8(1) AS is_deleted) FROM defimon.account_versions "
    "WHERE modulo(cityHash64(account_id, block_number, log_index), 100) = 0"
)


def _cond(where: str) -> str:
    return BASE.replace("{where}", where)


def _forms() -> dict[str, Callable[[str], str]]:
    """Each candidate's SQL for the extra conditions `where` (" AND ...")."""
    return {
        # The read before this benchmark: FINAL, the block filter, newest first per key.
        "final_limit_by": lambda w: (
            f"SELECT {COLUMNS} FROM defimon.{TABLE} FINAL WHERE {_cond(w)} "
            f"ORDER BY {NEWEST} LIMIT 1 BY {BY}"
        ),
        # FINAL and the filters in a subquery; the ordering and LIMIT 1 BY outside it.
        "final_subquery_limit_by": lambda w: (
            f"SELECT {COLUMNS} FROM (SELECT * FROM defimon.{TABLE} FINAL "
            f"WHERE {_cond(w)}) ORDER BY {NEWEST} LIMIT 1 BY {BY}"
        ),
        # FINAL, then argMax per key instead of a sort.
        "final_argmax": lambda w: (
            f"SELECT untuple(argMax(tuple({COLUMNS}), (block_number, log_index))) "
            f"FROM defimon.{TABLE} FINAL WHERE {_cond(w)} GROUP BY {BY}"
        ),
        # No FINAL: the newest version of each sorting key, retracted ones dropped, then the
        # newest per key (what FINAL does, spelled as two LIMIT 1 BY).
        "no_final_two_limit_by": lambda w: (
            f"SELECT {COLUMNS} FROM (SELECT * FROM defimon.{TABLE} WHERE {_cond(w)} "
            f"ORDER BY {SORTING_KEY}, version DESC LIMIT 1 BY {SORTING_KEY}) "
            f"WHERE is_deleted = 0 ORDER BY {NEWEST} LIMIT 1 BY {BY}"
        ),
        # The read the code uses now (protocols/read_side.latest_rows).
        "latest_rows": lambda w: latest_rows(TABLE, COLUMNS, BY, w, log_index=True),
    }


def _rows(store: Store, sql: str, params: dict[str, Any]) -> list[tuple[str, ...]]:
    return sorted(tuple(str(x) for x in r) for r in store.rows(sql, params))


def run(versions: int = VERSIONS, wallet_rounds: int = WALLET_ROUNDS) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-time-travel-"))
    try:
        store = Store.connect(data_dir=data_dir)
        store.migrate()
        keys = versions // 20
        store.command(_FILL, {"keys": keys, "versions": versions})
        store.command(
            "CREATE TABLE defimon.bench_retractions AS defimon.account_versions "
            "ENGINE = MergeTree ORDER BY tuple()"
        )
        store.command(_RETRACT, {"versions": versions})
        store.command(
            "INSERT INTO defimon.account_versions SELECT * FROM defimon.bench_retractions"
        )
        store.command("DROP TABLE defimon.bench_retractions")
        stored = int(store.scalar("SELECT count() FROM defimon.account_versions"))
        parts = int(
            store.scalar(
                "SELECT count() FROM system.parts WHERE database = 'defimon' "
                "AND table = 'account_versions' AND active"
            )
        )
        wallets = keys // 5
        forms = _forms()
        rng = random.Random(7)
        reads: dict[str, tuple[str, Callable[[], dict[str, Any]], int]] = {
            "time_travel_wallet_read": (
                " AND owner = {owner:String}",
                lambda: {"owner": f"0xwallet{rng.randrange(wallets)}"},
                wallet_rounds,
            ),
            "time_travel_market_read": (
                " AND pool = {pool:String}",
                lambda: {"pool": f"pool{rng.randrange(3)}"},
                MARKET_ROUNDS,
            ),
        }
        for read, (where, pick, rounds) in reads.items():
            samples: dict[str, list[float]] = {name: [] for name in forms}
            sizes = []
            for i in range(rounds):
                params = {"chain": 1, "block": rng.randint(1, BLOCKS), **pick()}
                expected = None
                for name in forms if i % 2 == 0 else reversed(forms):
                    sql = forms[name](where)
                    started = time.perf_counter()
                    got = _rows(store, sql, params)
                    samples[name].append((time.perf_counter() - started) * 1000)
                    if expected is None:
                        expected = got
                    elif got != expected:
                        raise AssertionError(f"{read}: {name} differs at {params}")
                sizes.append(len(expected or ()))
            for name, ms in samples.items():
                emit(
                    read,
                    percentile(ms, 50),
                    "ms",
                    form=name,
                    p50_ms=round(percentile(ms, 50), 2),
                    p99_ms=round(percentile(ms, 99), 2),
                    rounds=rounds,
                    rows_per_read=round(sum(sizes) / len(sizes)),
                    versions=stored,
                    parts=parts,
                    store="chdb",
                )
        store.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, default=VERSIONS)
    parser.add_argument("--wallet-rounds", type=int, default=WALLET_ROUNDS)
    args = parser.parse_args()
    run(args.versions, args.wallet_rounds)


if __name__ == "__main__":
    main()

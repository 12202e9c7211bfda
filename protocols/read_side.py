"""The read side every protocol implements: its subjects at a block, read back from the store
and valued with the flow's own functions, so a time-travel answer equals what the stream said
at that block.

The API (api/queries.py) resolves the block to answer as of (`AsOf`) and iterates the read
sides listed in protocols/registry.py (`READ_SIDES`); each protocol's `ReadSide` lives in
`protocols/<name>/read.py` and answers through a `ReadContext` (the store, the block's time,
token metadata and prices at a block). Every query binds its values server-side
({name:Type}); nothing is pasted into SQL.

A protocol's part of the diff (`changes`) splits each subject's change into `Change` parts;
the shared splits for lending accounts are here (`lending_change`, `exact_lending_change`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.chain import TokenInfo
from schemas.errors import NotFound
from schemas.positions import BlockRef, TokenPrice
from schemas.stress import Scenario

# The portfolio's lists (/v1/portfolio), in its JSON order: a read side's `portfolio` goes into
# one of them. `balances` is also summed alone (`balances_usd`).
SECTIONS = ("positions", "lending", "balances")


@dataclass(frozen=True, slots=True)
class AsOf:
    """The block an answer is as of; `hash` and `timestamp` are None for a block the store
    has no row for (backfill stores only blocks with watched logs)."""

    chain_id: int
    number: int
    hash: str | None
    timestamp: int | None

    def ref(self) -> BlockRef:
        return BlockRef(self.chain_id, self.number, self.hash or "", self.timestamp or 0)

    def json(self) -> dict[str, Any]:
        ref = self.ref()
        return {
            "chain_id": self.chain_id,
            "block_number": self.number,
            "block_hash": self.hash,
            "block_time": ref.time_iso() if self.timestamp is not None else None,
        }


class Reads(Protocol):
    """What a read side reads through: the store (ports.store.Store), or the API's head view
    (api/head_view.py HeadReads), which answers `latest_rows` reads at the head from memory."""

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ReadContext:
    """What a read side reads with: the store, and the shared lookups at a block."""

    store: Reads
    # Lending accrues interest to the block's own timestamp. Backfill stores only blocks with
    # watched logs, so for the others the time comes from the node (when reachable).
    block_time: Callable[[int, int], int | None] | None = None

    def timestamp(self, as_of: AsOf) -> int | None:
        if as_of.timestamp is not None:
            return as_of.timestamp
        return self.block_time(as_of.chain_id, as_of.number) if self.block_time else None

    def timed_ref(self, as_of: AsOf) -> BlockRef:
        """The block with its time, which interest accrues to (NotFound when unknown)."""
        timestamp = self.timestamp(as_of)
        if timestamp is None:
            raise NotFound(f"block {as_of.number}'s time is unknown (not stored, node unreachable)")
        return BlockRef(as_of.chain_id, as_of.number, as_of.hash or "", timestamp)

    def token_prices(self, as_of: AsOf, tokens: Sequence[str]) -> dict[str, tuple[TokenPrice, int]]:
        """Each token's latest routed USD price at or before the block, with its block."""
        return {
            r[0]: (TokenPrice(r[0], float(r[1]), r[2], int(r[3])), int(r[4]))
            for r in self.store.rows(
                latest_rows(
                    "token_prices",
                    "token, price_usd, source, hops, block_number",
                    "token",
                    " AND token IN {tokens:Array(String)}",
                ),
                {"chain": as_of.chain_id, "block": as_of.number, "tokens": list(tokens)},
            )
        }

    def token_info(self, chain_id: int, tokens: Sequence[str]) -> dict[str, TokenInfo]:
        """The metadata read for these tokens (a token whose read failed is absent)."""
        return {
            r[0]: TokenInfo(r[0], r[1], int(r[2]))
            for r in self.store.rows(TOKEN_INFO, {"chain": chain_id, "tokens": list(tokens)})
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One subject's part of a wallet's change between two blocks, in USD: price moves,
    interest, fees and the owner's own actions sum to `value_to - value_from`."""

    id: str
    protocol: str
    value_from: float
    value_to: float
    price: float = 0.0
    interest: float = 0.0
    fees: float = 0.0
    actions: float = 0.0

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "value_from": self.value_from,
            "value_to": self.value_to,
            "change": self.value_to - self.value_from,
            "price": self.price,
            "interest": self.interest,
            "fees": self.fees,
            "actions": self.actions,
        }


# Every column of a temporal table but its bookkeeping (and, for rows whose block time is
# not part of the state, that too).
ALL = "* EXCEPT (version, is_deleted)"
ALL_UNTIMED = "* EXCEPT (version, is_deleted, block_time)"


class LatestRows(str):
    """A read of each key's latest row (`latest_rows`): the SQL, and what it asks in parts, so
    that the API's head view (api/head_view.py) answers the same read from memory."""

    table: str
    columns: str
    by: str
    where: str
    log_index: bool
    temporal: bool  # False: a table without blocks (one row per key, the newest version)

    def __new__(
        cls,
        sql: str,
        table: str,
        columns: str,
        by: str,
        where: str,
        log_index: bool = False,
        temporal: bool = True,
    ) -> LatestRows:
        read = super().__new__(cls, sql)
        read.table, read.columns, read.by, read.where = table, columns, by, where
        read.log_index, read.temporal = log_index, temporal
        return read


def latest_rows(
    table: str, columns: str, by: str, where: str = "", *, log_index: bool = False
) -> LatestRows:
    """The temporal tables' one read: each `by` key's latest row of `table` at or before
    `{block:UInt64}` on `{chain:UInt64}` (`where`: more conditions, each " AND ..."; `log_index`:
    the table has one, in its sorting key, which orders a block's rows). Table, columns and
    conditions are the code's own constants; every value is a bound parameter.

    What FINAL would do, without FINAL (bench/time_travel.py: 3x faster for a wallet, ~2x for a
    whole market at 10,000,000 versions): the newest `version` of each row (its key, block,
    log index and block hash: the tables' sorting key), dropped if that is a reorg's retraction
    (is_deleted), then the newest remaining row per key. The conditions may filter before that
    because every version of one sorting key carries the same values (a retraction or a
    re-write copies the row; flows/rows.py), so none can pass a condition another fails."""
    row = f"{by}, block_number" + (", log_index" if log_index else "")
    newest = f"{by}, block_number DESC" + (", log_index DESC" if log_index else "")
    sql = (
        f"SELECT {columns} FROM (SELECT * FROM defimon.{table} "
        f"WHERE chain_id = {{chain:UInt64}}{where} AND block_number <= {{block:UInt64}} "
        f"ORDER BY {row}, block_hash, version DESC LIMIT 1 BY {row}, block_hash) "
        f"WHERE is_deleted = 0 ORDER BY {newest} LIMIT 1 BY {by}"
    )
    return LatestRows(sql, table, columns, by, where, log_index)


# Token metadata (a table without blocks: the newest version of each token).
TOKEN_INFO = LatestRows(
    "SELECT address, symbol, decimals FROM defimon.tokens FINAL "
    "WHERE chain_id = {chain:UInt64} AND address IN {tokens:Array(String)}",
    "tokens",
    "address, symbol, decimals",
    "address",
    " AND address IN {tokens:Array(String)}",
    temporal=False,
)


# What every answer at a block reads besides the read sides: the block itself (its hash and
# time: api/queries.py resolve_at) and `ReadContext`'s token metadata and prices.
AS_OF_READS = frozenset({"blocks", "tokens", "token_prices"})


def head_tables(sides: Sequence[ReadSide]) -> frozenset[str]:
    """The tables a head answer reads over these read sides (unqualified names): the one
    declaration the head feed (schemas/head_feed.py) and the head view (api/head_view.py)
    derive what they carry and hold from."""
    return AS_OF_READS.union(*(side.head_reads for side in sides))


def token_usd(amount: int, decimals: int, price: float | None) -> float:
    """A raw token amount in USD (0 without a price)."""
    return 0.0 if price is None else amount * price / 10**decimals


def lending_change(
    account_id: str,
    protocol: str,
    value_from: float,
    value_to: float,
    earlier_at_later_rates: float,
    earlier_at_later_block: float,
) -> Change:
    """One lending account, by counterfactual, from its values: the earlier state at the
    earlier block, at the later block's indices and time with the earlier prices, and wholly
    at the later block. Interest is the second less the first; price the third less the
    second; the rest (supplies, withdrawals, borrows, repayments, liquidations) is actions."""
    interest = earlier_at_later_rates - value_from
    price = earlier_at_later_block - earlier_at_later_rates
    return Change(
        account_id,
        protocol,
        value_from,
        value_to,
        price=price,
        interest=interest,
        actions=value_to - earlier_at_later_block,
    )


def exact_lending_change(
    account_id: str,
    protocol: str,
    unit: int,
    value_from: int,
    value_to: int,
    earlier_at_later_rates: int,
    earlier_at_later_block: int,
) -> Change:
    """`lending_change` on integer values (`unit` of them to the dollar): each part is an
    exact difference before it is divided, so nothing is lost subtracting close floats."""
    return Change(
        account_id,
        protocol,
        value_from / unit,
        value_to / unit,
        price=(earlier_at_later_block - earlier_at_later_rates) / unit,
        interest=(earlier_at_later_rates - value_from) / unit,
        actions=(value_to - earlier_at_later_block) / unit,
    )


def per_account(
    rows: Sequence[dict[str, Any]],
) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Lending versions (one row per account and asset) grouped by account, in id order, each
    with its newest row (the account-wide fields: owner, market, eMode)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["account_id"], []).append(r)
    return [
        (aid, versions, max(versions, key=lambda r: (r["block_number"], r["log_index"])))
        for aid, versions in sorted(grouped.items())
    ]


class ReadSide:
    """A protocol as the API reads it. Subclasses set `name` (the `protocol` of its subjects)
    and `section` (the portfolio list its subjects go in, one of SECTIONS) and implement
    `portfolio` and `changes`; the rest has a default meaning "none of this here"."""

    name: str
    section: str
    # Alert kinds on a metric only some protocols' subjects have (a health factor, IL, a tick
    # range) that this protocol's subjects have: a backtest of such a kind reads only the
    # read sides that list it (api/alerts/backtest.py).
    alert_kinds: frozenset[str] = frozenset()
    # The tables `portfolio` and `subjects` read (through `latest_rows`): what the API's head
    # view holds and the head feed carries (`head_tables`); a read of any other table at the
    # head goes to the store.
    head_reads: frozenset[str] = frozenset()

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """The owner's subjects at the block, valued, as /v1/portfolio lists them."""
        raise NotImplementedError

    def subjects(
        self,
        ctx: ReadContext,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None,
        pools: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        """Every open subject at the block (of these owners, holding any of these tokens, in
        these markets; None: any), valued, for /v1/positions and /v1/aggregate. The filter
        decides afterwards: these only narrow the SQL, so a read side may ignore one."""
        return []

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        """Why each of the owner's subjects changed in value from `start` to `end`."""
        raise NotImplementedError

    # Whether `advice` answers for this protocol's subjects.
    advises: bool = False

    def advice(
        self, ctx: ReadContext, owner: str, as_of: AsOf, target_wad: int, horizon: int
    ) -> list[dict[str, Any]]:
        """What to do about each of the owner's subjects at the block (`horizon` seconds of
        interest later): for a lending account below `target_wad`, the exact amounts that
        reach it; each answer names the numbers it rests on."""
        return []

    # Whether `stress` answers for this protocol's subjects (/v1/portfolio/{wallet}/stress
    # names the protocols it could not stress).
    stresses: bool = False

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        """The owner's subjects at the block, now and under the scenario (schemas/stress.py),
        valued by the same functions as `portfolio`; each in `section`'s list."""
        return []

    def subject_exists(self, ctx: ReadContext, chain_id: int, subject_id: str) -> bool:
        """Whether a subject with windows (/v1/positions/{id}/windows) has this id."""
        return False

    def liquidations(
        self, ctx: ReadContext, chain_id: int, start: int, end: int
    ) -> list[dict[str, Any]]:
        """Liquidations of this protocol's subjects in blocks [start, end], in block and log
        order, in the stream's wire format (schemas/liquidations.py)."""
        return []

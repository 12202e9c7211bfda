"""The balance book: ERC-20 balances of tracked wallets, folded block by block (pure).

A (wallet, token) pair is tracked from the block its opening balance was read at (the source
calls `balanceOf` there when the wallet or the token becomes tracked). That balance already
includes every transfer up to the end of its block, so a pair applies transfers only from
the next block on; transfers of pairs not yet open are ignored. Amounts are exact ints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protocols.erc20.events import TRANSFER, DecodeError, decode_transfer
from protocols.journal import JournaledDict, JournaledObjects
from schemas.chain import BlockBatch, RawLog, TokenInfo
from schemas.positions import TokenPrice

STAGE = "erc20"


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """A pair's balance at the end of a block in which it changed, priced at that block."""

    wallet: str
    token: TokenInfo
    balance: int
    price: TokenPrice | None
    price_block: int | None  # the block the price was last set at
    updated_block: int  # the block the balance last changed at
    # False: only the price moved (a revaluation for the stream; nothing new to store)
    moved: bool = True

    @property
    def value_usd(self) -> float | None:
        return balance_value(self.balance, self.token.decimals, self.price)


@dataclass(slots=True)
class BalanceOutput:
    changes: list[BalanceChange] = field(default_factory=list)
    dead: list[tuple[RawLog, str]] = field(default_factory=list)


@dataclass(slots=True)
class BalanceBook:
    # token -> wallet -> balance, for open pairs only (keyed by token: the per-log test is
    # one lookup of the log's address)
    balances: dict[str, dict[str, int]] = field(default_factory=JournaledObjects)
    price_blocks: dict[str, int] = field(default_factory=dict)
    # Tokens whose price changed since the last checkpoint block: their holders are revalued.
    repriced: set[str] = field(default_factory=set)
    changed_at: dict[tuple[str, str], int] = field(default_factory=JournaledDict)  # (wallet, token)

    def balance(self, wallet: str, token: str) -> int | None:
        """None: the pair is not tracked."""
        return self.balances.get(token, {}).get(wallet)


def balance_value(balance: int, decimals: int, price: TokenPrice | None) -> float | None:
    if price is None:
        return None
    # int / int is correctly rounded, so large balances lose nothing before the price.
    return balance / 10**decimals * price.usd


def balance_step(
    book: BalanceBook,
    batch: BlockBatch,
    tokens: Mapping[str, TokenInfo],
    prices: Mapping[str, TokenPrice],
    changed_prices: Iterable[TokenPrice] = (),
) -> BalanceOutput:
    """Apply one block: its tracked tokens' Transfer logs, then the pairs opened at it.

    `batch.balances` maps (wallet, token) to `balanceOf` at the end of the block. A transfer that
    would take a balance below zero (a token whose balance moves without Transfer logs:
    rebasing, fee on transfer) is a dead letter; the other side of it still applies.
    """
    out = BalanceOutput()
    openings, block_number = batch.balances, batch.header.number
    for i, ((wallet, token), reason) in enumerate(sorted(batch.unreadable_balances.items())):
        out.dead.append((_state_read(batch, wallet, token, i), f"opening balance: {reason}"))
    for price in changed_prices:
        book.price_blocks[price.token] = block_number
        if price.token in book.balances:
            book.repriced.add(price.token)
    if not book.balances and not openings:
        return out
    before: dict[tuple[str, str], int] = {}
    held_by_token = book.balances
    for log in batch.logs:
        held = held_by_token.get(log.address)
        if held is None or not log.topics or log.topics[0] != TRANSFER:
            continue
        try:
            sender, recipient, amount = decode_transfer(log)
        except DecodeError as exc:
            out.dead.append((log, f"ERC-20 Transfer: {exc}"))
            continue
        token = log.address
        if sender == recipient:
            # Moves nothing; the token still required the balance, so a shortfall means the
            # book is wrong for this pair.
            balance = held.get(sender)
            if balance is not None and (sender, token) not in openings and balance < amount:
                out.dead.append((log, _negative(sender, token, balance, amount)))
            continue
        if sender in held and (sender, token) not in openings:
            balance = held[sender]
            if balance < amount:
                out.dead.append((log, _negative(sender, token, balance, amount)))
            else:
                before.setdefault((sender, token), balance)
                held[sender] = balance - amount
        if recipient in held and (recipient, token) not in openings:
            balance = held[recipient]
            before.setdefault((recipient, token), balance)
            held[recipient] = balance + amount
    for (wallet, token), balance in openings.items():
        held = held_by_token.setdefault(token, JournaledDict())
        before.setdefault((wallet, token), held.get(wallet, 0))
        held[wallet] = balance
    for wallet, token in sorted(before):
        balance = held_by_token[token][wallet]
        if balance == before[(wallet, token)]:
            continue
        info = tokens.get(token) or TokenInfo(token, "???", 18)
        out.changes.append(
            BalanceChange(
                wallet, info, balance, prices.get(token), book.price_blocks.get(token), block_number
            )
        )
        book.changed_at[(wallet, token)] = block_number
    if batch.checkpoint and book.repriced:
        # Like positions, balances are worth what their token is worth now: a checkpoint
        # revalues every non-zero holding of a token whose price moved.
        emitted = {(c.wallet, c.token.address) for c in out.changes}
        for token in sorted(book.repriced):
            info = tokens.get(token) or TokenInfo(token, "???", 18)
            now, price_block = prices.get(token), book.price_blocks.get(token)
            for wallet, balance in sorted(book.balances[token].items()):
                if balance and (wallet, token) not in emitted:
                    out.changes.append(
                        BalanceChange(
                            wallet,
                            info,
                            balance,
                            now,
                            price_block,
                            book.changed_at.get((wallet, token), block_number),
                            moved=False,
                        )
                    )
        book.repriced.clear()
    return out


# Dead letters are keyed by (block, log index): a state read that failed is no log, so it
# takes an index no log of a block reaches, one per pair.
STATE_READ_INDEX = 4_000_000_000
_BALANCE_OF = "0x70a08231"


def _state_read(batch: BlockBatch, wallet: str, token: str, n: int) -> RawLog:
    """The dead-letter form of an unreadable opening `balanceOf(wallet)` on `token`: the call
    in place of a log (address the token, topics the selector and the wallet, no tx)."""
    h = batch.header
    wallet_word = "0x" + wallet[2:].rjust(64, "0")
    return RawLog(
        h.chain_id,
        h.number,
        h.hash,
        STATE_READ_INDEX + n,
        "",
        0,
        token,
        (_BALANCE_OF, wallet_word),
        "0x",
    )


def _negative(wallet: str, token: str, balance: int, amount: int) -> str:
    return f"{wallet} would go negative: holds {balance} of {token}, sends {amount}"

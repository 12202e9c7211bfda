"""The balance fold: transfers in and out, self-transfers, mints, burns, openings, shortfalls."""

from __future__ import annotations

import pytest

from protocols.erc20.book import BalanceBook, balance_step, balance_value
from protocols.erc20.events import TRANSFER, DecodeError, decode_transfer
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.positions import TokenPrice

TOKEN = "0x" + "aa" * 20
OTHER_TOKEN = "0x" + "bb" * 20
ALICE = "0x" + "01" * 20
BOB = "0x" + "02" * 20
CAROL = "0x" + "03" * 20  # never tracked
ZERO = "0x" + "00" * 20
INFO = {TOKEN: TokenInfo(TOKEN, "TKN", 6)}
PRICE = TokenPrice(TOKEN, 2.0, "usd", 0)


def word(value: int) -> str:
    return f"{value:064x}"


def transfer(
    sender: str, recipient: str, amount: int, index: int = 0, token: str = TOKEN
) -> RawLog:
    topics = (TRANSFER, "0x" + word(int(sender, 16)), "0x" + word(int(recipient, 16)))
    return RawLog(1, 10, "0xblock", index, "0xtx", 0, token, topics, "0x" + word(amount))


def batch(
    number: int, logs: list[RawLog], openings: dict[tuple[str, str], int] | None = None
) -> BlockBatch:
    header = BlockHeader(1, number, f"0x{number:064x}", "", 1_700_000_000 + number)
    return BlockBatch(header, logs, number, False, balances=openings or {})


def opened(*pairs: tuple[str, int]) -> BalanceBook:
    book = BalanceBook()
    balance_step(book, batch(1, [], {(w, TOKEN): b for w, b in pairs}), INFO, {})
    return book


def test_opening_balances_are_changes_except_zeros() -> None:
    book = BalanceBook()
    out = balance_step(
        book, batch(5, [], {(ALICE, TOKEN): 700, (BOB, TOKEN): 0}), INFO, {TOKEN: PRICE}
    )
    assert [(c.wallet, c.balance) for c in out.changes] == [(ALICE, 700)]
    assert out.changes[0].token == INFO[TOKEN]
    assert out.changes[0].value_usd == 700 / 10**6 * 2.0
    assert book.balance(BOB, TOKEN) == 0  # tracked, though nothing to store


def test_transfers_in_and_out_between_tracked_and_untracked_wallets() -> None:
    book = opened((ALICE, 1_000), (BOB, 50))
    logs = [transfer(ALICE, BOB, 300, 0), transfer(CAROL, ALICE, 5, 1), transfer(BOB, CAROL, 20, 2)]
    out = balance_step(book, batch(2, logs), INFO, {})
    assert {(c.wallet, c.balance) for c in out.changes} == {(ALICE, 705), (BOB, 330)}
    assert book.balance(CAROL, TOKEN) is None
    assert not out.dead


def test_self_transfer_changes_nothing() -> None:
    book = opened((ALICE, 1_000))
    out = balance_step(book, batch(2, [transfer(ALICE, ALICE, 400)]), INFO, {})
    assert out.changes == [] and out.dead == []
    assert book.balance(ALICE, TOKEN) == 1_000


def test_mint_from_zero_and_burn_to_zero() -> None:
    book = opened((ALICE, 10))
    out = balance_step(book, batch(2, [transfer(ZERO, ALICE, 90)]), INFO, {})
    assert [(c.wallet, c.balance) for c in out.changes] == [(ALICE, 100)]
    out = balance_step(book, batch(3, [transfer(ALICE, ZERO, 100)]), INFO, {})
    assert [(c.wallet, c.balance) for c in out.changes] == [(ALICE, 0)]
    assert book.balance(ZERO, TOKEN) is None


def test_negative_balance_is_a_dead_letter_and_the_recipient_still_counts() -> None:
    book = opened((ALICE, 10), (BOB, 0))
    bad = transfer(ALICE, BOB, 11)
    out = balance_step(book, batch(2, [bad]), INFO, {})
    assert [lg for lg, _reason in out.dead] == [bad]
    assert "negative" in out.dead[0][1]
    assert book.balance(ALICE, TOKEN) == 10
    assert book.balance(BOB, TOKEN) == 11
    # A self-transfer beyond the balance is as impossible on chain.
    out = balance_step(book, batch(3, [transfer(ALICE, ALICE, 11)]), INFO, {})
    assert len(out.dead) == 1 and out.changes == []


def test_transfers_at_the_opening_block_are_in_the_opening_balance() -> None:
    book = opened((ALICE, 100))
    # BOB becomes tracked at block 2: balanceOf there already counts the transfer in block 2.
    logs = [transfer(ALICE, BOB, 40)]
    out = balance_step(book, batch(2, logs, {(BOB, TOKEN): 40}), INFO, {})
    assert {(c.wallet, c.balance) for c in out.changes} == {(ALICE, 60), (BOB, 40)}
    # Later transfers apply to both.
    out = balance_step(book, batch(3, [transfer(BOB, ALICE, 15)]), INFO, {})
    assert {(c.wallet, c.balance) for c in out.changes} == {(ALICE, 75), (BOB, 25)}


def test_transfers_in_and_out_within_a_block_that_cancel_are_no_change() -> None:
    book = opened((ALICE, 100))
    logs = [transfer(ALICE, CAROL, 30, 0), transfer(CAROL, ALICE, 30, 1)]
    assert balance_step(book, batch(2, logs), INFO, {}).changes == []


def test_malformed_transfer_and_untracked_tokens() -> None:
    book = opened((ALICE, 100))
    short = transfer(ALICE, BOB, 1)._replace(data="0x1234")
    erc721 = transfer(ALICE, BOB, 1)._replace(topics=(*transfer(ALICE, BOB, 1).topics, "0x01"))
    other = transfer(ALICE, BOB, 1, token=OTHER_TOKEN)
    out = balance_step(book, batch(2, [short, erc721, other]), INFO, {})
    assert [lg for lg, _reason in out.dead] == [short, erc721]
    assert "bytes" in out.dead[0][1] and "topics" in out.dead[1][1]
    assert book.balance(ALICE, TOKEN) == 100


def test_price_block_follows_price_changes() -> None:
    book = opened((ALICE, 100))
    balance_step(book, batch(2, [], {}), INFO, {TOKEN: PRICE}, [PRICE])
    out = balance_step(book, batch(3, [transfer(CAROL, ALICE, 1)]), INFO, {TOKEN: PRICE})
    (change,) = out.changes
    assert change.price == PRICE and change.price_block == 2


def test_value_is_exact_for_large_balances() -> None:
    assert balance_value(10**40 + 1, 18, TokenPrice(TOKEN, 1.0, "usd", 0)) == 1e22
    assert balance_value(5, 0, None) is None


def test_a_price_change_revalues_holders_at_the_next_checkpoint() -> None:
    book = opened((ALICE, 100), (BOB, 0))
    cheaper = TokenPrice(TOKEN, 1.5, "usd", 0)
    quiet = batch(2, [])
    quiet.checkpoint = False  # backfill, mid-range: nothing yet
    assert balance_step(book, quiet, INFO, {TOKEN: cheaper}, [cheaper]).changes == []
    out = balance_step(book, batch(3, [transfer(CAROL, BOB, 7)]), INFO, {TOKEN: cheaper})
    by_wallet = {c.wallet: c for c in out.changes}
    assert by_wallet[BOB].moved and by_wallet[BOB].balance == 7
    assert not by_wallet[ALICE].moved and by_wallet[ALICE].balance == 100
    assert by_wallet[ALICE].value_usd == 100 / 10**6 * 1.5 and by_wallet[ALICE].price_block == 2
    assert by_wallet[ALICE].updated_block == 1 and by_wallet[BOB].updated_block == 3
    assert balance_step(book, batch(4, []), INFO, {TOKEN: cheaper}).changes == []


def test_the_fast_decoder_agrees_with_the_generic_one_and_gives_reasons() -> None:
    assert decode_transfer(transfer(ALICE, BOB, 7)) == (ALICE, BOB, 7)
    bad_topic = transfer(ALICE, BOB, 7)._replace(topics=(TRANSFER, "0x" + "f" * 64, BOB))
    not_hex = transfer(ALICE, BOB, 7)._replace(data="0x" + "z" * 64)
    for log, reason in ((bad_topic, "high bits"), (not_hex, "not hex")):
        with pytest.raises(DecodeError, match=reason):
            decode_transfer(log)

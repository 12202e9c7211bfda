"""Opening balances are read for the pairs that hold or move a token, not wallets x tokens.

Against a real devnet (anvil, the real tokens): the chain reader reads the history twice,
side by side, once opening every (wallet, token) pair as it becomes tracked and once opening
only the pairs that received their token by then (found by a Transfer scan) and the others
where they first appear in a tracked Transfer. Both are folded by the real balance book, and
both equal `balanceOf` for every tracked pair at the end; the second reads fewer balances:
a watched wallet that holds one token is read for that one, and a watched wallet that holds
nothing is read once, where it first receives something.
"""

from __future__ import annotations

from dataclasses import replace

from devnet.rpc import RpcClient as DevnetRpc
from flows.chain_reader import ChainReader
from flows.rpc import RpcClient
from protocols.erc20.book import BalanceBook, balance_step
from schemas.chain import BlockBatch, TokenInfo
from tests.conftest import Devnet
from tests.integration.test_balances import balances_of, fund
from tests.support import block_number

HOLDER = "0x" + "4d" * 20  # holds WETH only, from before it is tracked
EMPTY = "0x" + "e0" * 20  # holds nothing when tracked; receives USDC later


def read_and_fold(
    reader: ChainReader, ranges: list[tuple[int, int]]
) -> tuple[BalanceBook, dict[tuple[str, str], int]]:
    """The book after every range, and the block each opening balance was read at."""
    book, tokens = BalanceBook(), dict[str, TokenInfo]()
    opened: dict[tuple[str, str], int] = {}
    for start, end in ranges:
        batches: list[BlockBatch] = reader.read_range(start, end, head=end, live=False).batches
        for batch in batches:
            tokens.update(batch.tokens)
            for pair in (*batch.balances, *batch.unreadable_balances):
                assert pair not in opened, f"{pair} opened twice"
                opened[pair] = batch.header.number
            out = balance_step(book, batch, tokens, {})
            assert out.dead == [], out.dead
    return book, opened


def test_openings_only_for_pairs_that_hold_or_move_and_balances_stay_exact(
    devnet: Devnet,
) -> None:
    d = devnet.deployment
    chain = DevnetRpc(devnet.rpc_url)
    devnet.simulator.step()
    fund(chain, devnet, HOLDER, ["WETH"], 2)
    middle = block_number(devnet.rpc_url)
    devnet.simulator.step()
    received = fund(chain, devnet, EMPTY, ["USDC"], 1)
    devnet.simulator.step()
    head = block_number(devnet.rpc_url)
    chain.close()
    ranges = [(d.start_block, middle), (middle + 1, head)]
    config = replace(d.to_chain_config(), watch_wallets=(HOLDER, EMPTY))

    results = {}
    for scan in (False, True):
        reader = ChainReader(RpcClient(devnet.rpc_url), config)
        reader.balances.scan = scan
        book, opened = read_and_fold(reader, ranges)
        wallets, tokens = sorted(reader.balances.wallets), sorted(reader.balances.tokens)
        results[scan] = (book, opened, wallets, tokens)
        reader.rpc.close()

    every, only = results[False], results[True]
    assert every[2:] == only[2:], "both track the same wallets and tokens"
    _book, _opened, wallets, tokens = only
    assert {HOLDER, EMPTY} <= set(wallets) and len(wallets) >= 5 and len(tokens) >= 3
    pairs = [(w, t) for w in wallets for t in tokens]
    expected = balances_of(devnet.rpc_url, pairs, head)
    for book, _opened, _w, _t in (every, only):
        served = {pair: book.balance(*pair) or 0 for pair in pairs}
        assert served == expected
    assert sum(1 for v in expected.values() if v) >= 10

    # Every pair opened once in the first read; only the holders and movers in the second.
    weth, usdc = d.tokens["WETH"].address, d.tokens["USDC"].address
    assert set(every[1]) == set(pairs)
    assert {t for w, t in only[1] if w == HOLDER} == {weth}
    assert {(p, b) for p, b in only[1].items() if p[0] == EMPTY} == {((EMPTY, usdc), received)}
    assert len(only[1]) < len(every[1])
    # A pair never opened holds nothing (else the scan missed it).
    assert all(expected[p] == 0 for p in pairs if p not in only[1])
    print(f"openings: {len(every[1])} pairs read for every pair, {len(only[1])} for holders")

"""The pool replica against the real contracts: every pool's state and every position's
uncollected fees, rebuilt from the logs alone, equal the chain's own answers at each block.

Three phases on one devnet, each block checked as it is mined:
1. The seeded market (swaps with price limits, LP mints, increases, decreases, collects, burns,
   transfers), plus what the simulator does not do: protocol fees switched on, changed and
   collected (`setFeeProtocol`, `collectProtocol`), and flash loans that pay the fee and
   sometimes a donation (through FlashDonor, below).
2. Two NFTs in one range, where NPM.collect pays less than an NFT's tokensOwed (the pool
   position rounds down at every poke), which the replica must predict.
3. Swaps across a tick-bitmap word edge (a step boundary with no tick), exact input and exact
   output, with and without price limits.

At each block with logs the test compares, by `eth_call` at that block:
- each pool: slot0 (price, tick, feeProtocol), liquidity, feeGrowthGlobal{0,1}X128,
  protocolFees, `ticks(t)` of every tick ever initialised (cleared ones must read empty), the
  bitmap words, and `positions(key)` of every pool position the replica ever held;
- each position NFT: `positions(tokenId)` (range, liquidity, fee checkpoints, tokens owed) and
  a static `collect(tokenId, owner, 2^128-1, 2^128-1)` from its owner.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from eth_utils import keccak

from devnet.contracts import (
    DEADLINE,
    ERC20_BALANCE_OF,
    ERC20_MINT,
    MAX_UINT128,
    NPM_MINT,
    ROUTER_EXACT_INPUT_SINGLE,
    Function,
)
from devnet.deploy import TOKEN_SPECS, Pool
from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.events import PoolEvent, decode_pool_extra
from protocols.uniswap_v3.fee_tracker import NpmFeeTracker, position_fees
from protocols.uniswap_v3.math import get_sqrt_ratio_at_tick
from protocols.uniswap_v3.replica import PoolReplica
from schemas.chain import RawLog
from tests.conftest import Devnet
from tests.support import minted_token_ids, rpc

STEPS = 32  # simulator rounds: ~230 blocks
ZERO = "0x" + "0" * 40
GAS_LIMIT = 3_000_000

POOL_SLOT0 = Function(
    "slot0()", ("uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool")
)
POOL_LIQUIDITY = Function("liquidity()", ("uint128",))
POOL_GROWTH0 = Function("feeGrowthGlobal0X128()", ("uint256",))
POOL_GROWTH1 = Function("feeGrowthGlobal1X128()", ("uint256",))
POOL_PROTOCOL_FEES = Function("protocolFees()", ("uint128", "uint128"))
POOL_TICKS = Function(
    "ticks(int24)",
    ("uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool"),
)
POOL_BITMAP = Function("tickBitmap(int16)", ("uint256",))
POOL_POSITIONS = Function(
    "positions(bytes32)", ("uint128", "uint256", "uint256", "uint128", "uint128")
)
POOL_SET_FEE_PROTOCOL = Function("setFeeProtocol(uint8,uint8)")
POOL_COLLECT_PROTOCOL = Function("collectProtocol(address,uint128,uint128)", ("uint128", "uint128"))
NPM_POSITIONS = Function(
    "positions(uint256)",
    (
        "uint96", "address", "address", "address", "uint24", "int24", "int24",
        "uint128", "uint256", "uint256", "uint128", "uint128",
    ),
)  # fmt: skip
NPM_COLLECT = Function("collect((uint256,address,uint128,uint128))", ("uint256", "uint256"))
DONOR_FLASH = Function("flash(address,uint256,uint256,uint256,uint256)")
# ExactOutputSingleParams: tokenIn, tokenOut, fee, recipient, deadline, amountOut,
#                          amountInMaximum, sqrtPriceLimitX96
ROUTER_EXACT_OUTPUT_SINGLE = Function(
    "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
    ("uint256",),
)

# The flash borrower: FlashDonor.sol below, compiled with the devnet's npm solc 0.8.20
# (optimizer 200 runs, evmVersion paris, as devnet/contracts.py compiles its own contracts).
#
# // SPDX-License-Identifier: MIT
# pragma solidity 0.8.20;
#
# interface IERC20Like {
#     function transfer(address to, uint256 amount) external returns (bool);
# }
#
# interface IPoolLike {
#     function token0() external view returns (address);
#     function token1() external view returns (address);
#     function flash(address to, uint256 amount0, uint256 amount1, bytes calldata data) external;
# }
#
# /// Borrows from a Uniswap V3 pool's flash() and repays the fee plus an optional donation.
# contract FlashDonor {
#     function flash(address pool, uint256 a0, uint256 a1, uint256 extra0, uint256 extra1)
#         external
#     {
#         bytes memory data = abi.encode(pool, a0 + extra0, a1 + extra1);
#         IPoolLike(pool).flash(address(this), a0, a1, data);
#     }
#
#     function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
#         (address pool, uint256 owe0, uint256 owe1) =
#             abi.decode(data, (address, uint256, uint256));
#         require(msg.sender == pool, "pool");
#         IPoolLike p = IPoolLike(pool);
#         if (owe0 + fee0 > 0) require(IERC20Like(p.token0()).transfer(pool, owe0 + fee0), "t0");
#         if (owe1 + fee1 > 0) require(IERC20Like(p.token1()).transfer(pool, owe1 + fee1), "t1");
#     }
# }
FLASH_DONOR_BYTECODE = "0x" + (
    "608060405234801561001057600080fd5b506105fe806100206000396000f3fe608060405234801561001057"
    "600080fd5b50600436106100365760003560e01c8063538cd2d81461003b578063e9cbafb014610050575b60"
    "0080fd5b61004e6100493660046103f6565b610063565b005b61004e61005e36600461043a565b610118565b"
    "60008561007084876104ba565b61007a84876104ba565b604080516001600160a01b03909416602085015283"
    "0191909152606082015260800160408051601f19818403018152908290526312439b2f60e21b825291506001"
    "600160a01b0387169063490e6cbc906100de9030908990899087906004016104e1565b600060405180830381"
    "600087803b1580156100f857600080fd5b505af115801561010c573d6000803e3d6000fd5b50505050505050"
    "505050565b600080806101288486018661054d565b91945092509050336001600160a01b0384161461017957"
    "60405162461bcd60e51b8152600401610170906020808252600490820152631c1bdbdb60e21b604082015260"
    "600190565b60405180910390fd5b82600061018689856104ba565b11156102a757806001600160a01b031663"
    "0dfe16816040518163ffffffff1660e01b8152600401602060405180830381865afa1580156101ca573d6000"
    "803e3d6000fd5b505050506040513d601f19601f820116820180604052508101906101ee9190610582565b60"
    "01600160a01b031663a9059cbb856102078b876104ba565b6040516001600160e01b031960e085901b168152"
    "6001600160a01b03909216600483015260248201526044016020604051808303816000875af1158015610252"
    "573d6000803e3d6000fd5b505050506040513d601f19601f8201168201806040525081019061027691906105"
    "a6565b6102a75760405162461bcd60e51b8152602060048201526002602482015261074360f41b6044820152"
    "606401610170565b60006102b388846104ba565b11156103d457806001600160a01b031663d21220a7604051"
    "8163ffffffff1660e01b8152600401602060405180830381865afa1580156102f7573d6000803e3d6000fd5b"
    "505050506040513d601f19601f8201168201806040525081019061031b9190610582565b6001600160a01b03"
    "1663a9059cbb856103348a866104ba565b6040516001600160e01b031960e085901b1681526001600160a01b"
    "03909216600483015260248201526044016020604051808303816000875af115801561037f573d6000803e3d"
    "6000fd5b505050506040513d601f19601f820116820180604052508101906103a391906105a6565b6103d457"
    "60405162461bcd60e51b8152602060048201526002602482015261743160f01b604482015260640161017056"
    "5b5050505050505050565b6001600160a01b03811681146103f357600080fd5b50565b600080600080600060"
    "a0868803121561040e57600080fd5b8535610419816103de565b976020870135975060408701359660608101"
    "35965060800135945092505050565b6000806000806060858703121561045057600080fd5b84359350602085"
    "01359250604085013567ffffffffffffffff8082111561047657600080fd5b818701915087601f8301126104"
    "8a57600080fd5b81358181111561049957600080fd5b8860208285010111156104ab57600080fd5b95989497"
    "505060200194505050565b808201808211156104db57634e487b7160e01b600052601160045260246000fd5b"
    "92915050565b60018060a01b0385168152600060208581840152846040840152608060608401528351806080"
    "85015260005b818110156105295785810183015185820160a00152820161050d565b50600060a08286010152"
    "60a0601f19601f8301168501019250505095945050505050565b600080600060608486031215610562576000"
    "80fd5b833561056d816103de565b95602085013595506040909401359392505050565b600060208284031215"
    "61059457600080fd5b815161059f816103de565b9392505050565b6000602082840312156105b857600080fd"
    "5b8151801515811461059f57600080fdfea2646970667358221220493748691ed88c8e061849e804cb447f43"
    "31fc91779b1e8b1a78af4b61a0342e64736f6c63430008140033"
)


class Chain:
    """JSON-RPC with batches: the checks make a few hundred calls a block, in one request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(timeout=60)

    def close(self) -> None:
        self.client.close()

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Results in order; None where the call failed (e.g. an eth_call that reverted)."""
        if not calls:
            return []
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        answers = {item["id"]: item for item in self.client.post(self.url, json=body).json()}
        return [answers[i].get("result") for i in range(len(calls))]

    def send(self, sender: str, to: str | None, data: str) -> dict[str, Any]:
        """One transaction (mined at once by automine); its receipt, which must succeed."""
        # an explicit limit: anvil's estimate can be short for calls with callbacks (63/64 rule)
        tx: dict[str, Any] = {"from": sender, "data": data, "gas": hex(GAS_LIMIT)}
        if to is not None:
            tx["to"] = to
        tx_hash = rpc(self.url, "eth_sendTransaction", [tx])
        deadline = time.monotonic() + 10
        while (receipt := rpc(self.url, "eth_getTransactionReceipt", [tx_hash])) is None:
            assert time.monotonic() < deadline, f"{tx_hash} not mined"
            time.sleep(0.01)
        assert receipt["status"] == "0x1", f"transaction to {to} reverted"
        return dict(receipt)


def raw_log(chain_id: int, entry: dict[str, Any]) -> RawLog:
    return RawLog(
        chain_id,
        int(entry["blockNumber"], 16),
        entry["blockHash"],
        int(entry["logIndex"], 16),
        entry["transactionHash"],
        int(entry["transactionIndex"], 16),
        entry["address"].lower(),
        tuple(entry["topics"]),
        entry["data"],
    )


def position_key(owner: str, tick_lower: int, tick_upper: int) -> bytes:
    """PositionKey.compute: keccak256(abi.encodePacked(owner, int24 tickLower, tickUpper))."""
    packed = bytes.fromhex(owner[2:]) + b"".join(
        (t % (1 << 24)).to_bytes(3, "big") for t in (tick_lower, tick_upper)
    )
    return keccak(packed)


class Replay:
    """Everything rebuilt from logs: one replica per pool, the NFTs' fee checkpoints."""

    def __init__(self, devnet: Devnet) -> None:
        deployment = devnet.deployment
        self.chain_id = deployment.chain_id
        self.npm = deployment.position_manager
        self.replicas = {p.address: PoolReplica(p.fee, p.tick_spacing) for p in deployment.pools}
        self.tracker = NpmFeeTracker(self.npm)
        self.token_pool: dict[int, str] = {}
        self.owners: dict[int, str] = {}
        self.pending_mint: tuple[str, str, ev.PoolMint] | None = None  # tx, pool, the Mint
        self.kinds: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        # what the replica once held, to check the chain cleared it too
        self.ever_ticks: dict[str, set[int]] = {a: set() for a in self.replicas}
        self.ever_words: dict[str, set[int]] = {a: set() for a in self.replicas}
        self.ever_positions: dict[str, set[tuple[str, int, int]]] = {
            a: set() for a in self.replicas
        }
        self.next_block = deployment.start_block

    def apply(self, log: RawLog) -> None:
        replica = self.replicas.get(log.address)
        if replica is not None:
            event: PoolEvent | ev.Event | None = ev.decode(ev.Role.POOL, log)
            if event is None:
                event = decode_pool_extra(log)  # Flash, SetFeeProtocol, Collect, CollectProtocol
            if event is None:
                return  # IncreaseObservationCardinalityNext
            assert not isinstance(
                event,
                ev.PoolCreated
                | ev.IncreaseLiquidity
                | ev.DecreaseLiquidity
                | ev.Collect
                | ev.Transfer,
            )
            self.events[type(event).__name__] += 1
            if isinstance(event, ev.Swap):
                self.kinds[replica.apply_swap(*event).kind] += 1
            else:
                replica.apply(event)
            if isinstance(event, ev.PoolMint) and event.owner == self.npm:
                self.pending_mint = (log.tx_hash, log.address, event)
            self.ever_ticks[log.address].update(replica.ticks)
            self.ever_words[log.address].update(replica.bitmap)
            self.ever_positions[log.address].update(replica.positions)
            return
        assert log.address == self.npm
        npm_event = ev.decode(ev.Role.POSITION_MANAGER, log)
        if npm_event is None:
            return  # approvals
        self.events[type(npm_event).__name__] += 1
        if isinstance(npm_event, ev.Transfer):
            token_id = npm_event.token_id
            if npm_event.sender == ZERO:
                # NPM.mint: the pool's Mint came first in the same transaction
                assert self.pending_mint is not None and self.pending_mint[0] == log.tx_hash
                self.token_pool[token_id] = self.pending_mint[1]
                self.owners[token_id] = npm_event.recipient
            elif npm_event.recipient == ZERO:
                self.tracker.on_burn(token_id)
                del self.owners[token_id]
            else:
                self.owners[token_id] = npm_event.recipient
            return
        assert not isinstance(npm_event, ev.PoolCreated | ev.Initialize | ev.Swap)
        assert not isinstance(npm_event, ev.PoolMint | ev.PoolBurn)
        token_id = npm_event.token_id
        replica = self.replicas[self.token_pool[token_id]]
        if isinstance(npm_event, ev.IncreaseLiquidity):
            if token_id in self.tracker.positions:
                self.tracker.on_increase(replica, token_id, npm_event.liquidity)
            else:
                assert self.pending_mint is not None and self.pending_mint[0] == log.tx_hash
                mint = self.pending_mint[2]
                self.tracker.on_mint(
                    replica, token_id, mint.tick_lower, mint.tick_upper, npm_event.liquidity
                )
        elif isinstance(npm_event, ev.DecreaseLiquidity):
            self.tracker.on_decrease(
                replica, token_id, npm_event.liquidity, npm_event.amount0, npm_event.amount1
            )
        else:
            self.tracker.on_collect(replica, token_id, npm_event.amount0, npm_event.amount1)


def _same(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    return answer


def _slot0(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    return answer[0], answer[1], answer[5]  # sqrtPriceX96, tick, feeProtocol


def _tick(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*answer[:4], answer[7])  # the fee fields and `initialized`


def _nft(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    return answer[5:]  # tickLower .. tokensOwed1


def _dropped_position(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    # the replica drops empty pool positions; the pool keeps their stale checkpoint
    return answer[0], answer[3], answer[4]  # liquidity, tokensOwed0, tokensOwed1


class Checker:
    """Compares the replay with the chain at one block, in one batch of eth_calls."""

    def __init__(self, chain: Chain, replay: Replay, pools: list[Pool]) -> None:
        self.chain, self.replay, self.pools = chain, replay, pools
        self.blocks = 0
        self.comparisons: Counter[str] = Counter()
        self.fees_seen = 0  # NFT checks where there were fees or tokens to collect

    def check(self, block: int) -> None:
        replay = self.replay
        calls: list[tuple[str, list[Any]]] = []
        # (what, the function, the part of its answer compared, the replica's value)
        checks: list[tuple[str, Function, Callable[[tuple[Any, ...]], tuple[Any, ...]], Any]] = []

        def call(
            what: str,
            to: str,
            fn: Function,
            args: tuple[Any, ...],
            expected: tuple[Any, ...],
            project: Callable[[tuple[Any, ...]], tuple[Any, ...]] = _same,
            sender: str | None = None,
        ) -> None:
            tx: dict[str, Any] = {"to": to, "data": fn.encode(*args)}
            if sender is not None:
                tx["from"] = sender
            calls.append(("eth_call", [tx, hex(block)]))
            checks.append((what, fn, project, tuple(expected)))

        for pool in self.pools:
            replica, address = replay.replicas[pool.address], pool.address
            slot0 = (replica.sqrt_price_x96, replica.tick, replica.fee_protocol)
            call(f"{address} slot0", address, POOL_SLOT0, (), slot0, _slot0)
            call(f"{address} liquidity", address, POOL_LIQUIDITY, (), (replica.liquidity,))
            growth0, growth1 = replica.fee_growth_global0_x128, replica.fee_growth_global1_x128
            call(f"{address} growth0", address, POOL_GROWTH0, (), (growth0,))
            call(f"{address} growth1", address, POOL_GROWTH1, (), (growth1,))
            protocol = (replica.protocol_fees0, replica.protocol_fees1)
            call(f"{address} protocolFees", address, POOL_PROTOCOL_FEES, (), protocol)
            for tick in sorted(replay.ever_ticks[address]):
                info = (*replica.tick_info(tick), tick in replica.ticks)
                call(f"{address} ticks({tick})", address, POOL_TICKS, (tick,), info, _tick)
            for word in sorted(replay.ever_words[address]):
                bits = (replica.bitmap.get(word, 0),)
                call(f"{address} tickBitmap({word})", address, POOL_BITMAP, (word,), bits)
            for owner, lower, upper in sorted(replay.ever_positions[address]):
                what = f"{address} positions({owner}, {lower}, {upper})"
                key = (position_key(owner, lower, upper),)
                if (owner, lower, upper) in replica.positions:
                    pos = replica.position(owner, lower, upper)
                    call(what, address, POOL_POSITIONS, key, pos)
                else:
                    call(what, address, POOL_POSITIONS, key, (0, 0, 0), _dropped_position)
        for token_id, nft in sorted(replay.tracker.positions.items()):
            replica = replay.replicas[replay.token_pool[token_id]]
            owner = replay.owners[token_id]
            call(f"NPM positions({token_id})", replay.npm, NPM_POSITIONS, (token_id,), nft, _nft)
            fees = replay.tracker.uncollected(replica, token_id)
            self.fees_seen += any(fees)
            params = ((token_id, owner, MAX_UINT128, MAX_UINT128),)
            what = f"NPM collect({token_id}) from {owner}"
            call(what, replay.npm, NPM_COLLECT, params, fees, sender=owner)

        mismatches = []
        for (what, fn, project, expected), result in zip(
            checks, self.chain.batch(calls), strict=True
        ):
            assert result is not None, f"block {block}: {what} reverted"
            got = project(fn.decode(result))
            if got != expected:
                mismatches.append(f"{what}: chain {got}, replica {expected}")
            self.comparisons[fn.signature] += 1
        assert not mismatches, f"block {block}: " + "; ".join(mismatches[:8])
        self.blocks += 1


def sync(chain: Chain, replay: Replay, checker: Checker, addresses: list[str]) -> None:
    """Apply the logs of every new block and check the chain at each block that had any."""
    head = int(rpc(chain.url, "eth_blockNumber", []), 16)
    if head < replay.next_block:
        return
    entries = rpc(
        chain.url,
        "eth_getLogs",
        [{"fromBlock": hex(replay.next_block), "toBlock": hex(head), "address": addresses}],
    )
    logs = sorted((raw_log(replay.chain_id, e) for e in entries), key=lambda lg: lg.key)
    by_block: dict[int, list[RawLog]] = {}
    for log in logs:
        by_block.setdefault(log.block_number, []).append(log)
    for block, block_logs in sorted(by_block.items()):
        for log in block_logs:
            replay.apply(log)
        checker.check(block)
    replay.next_block = head + 1


def shared_range_rounding(
    devnet: Devnet, chain: Chain, replay: Replay, checker: Checker, addresses: list[str]
) -> int:
    """Two NFTs in one range, where a collect returns less than the NFT's tokensOwed.

    NPM keeps one pool position per range for all its NFTs. The pool accrues it at every poke,
    rounding down each time; NPM accrues each NFT from its own checkpoint, rounding once. A
    tiny NFT A is poked (collected) after every swap while a big NFT B accrues untouched, so
    B's entitlement soon exceeds what the pool position holds, and NPM.collect returns the
    pool's smaller amount. Returns the blocks at which that cap was binding for B.
    """
    deployment = devnet.deployment
    pool = deployment.pools[1]
    replica = replay.replicas[pool.address]
    npm, router = deployment.position_manager, deployment.swap_router
    spacing = pool.tick_spacing
    lower, upper = (replica.tick // spacing - 3) * spacing, (replica.tick // spacing + 4) * spacing
    owner_a, owner_b, swapper = deployment.wallets[:3]

    def mint(owner: str, liquidity: int) -> int:
        amount0, amount1 = replica.modify_amounts(lower, upper, liquidity)
        desired = (2 * amount0 + 2, 2 * amount1 + 2)  # NPM rounds the liquidity down
        params = (pool.token0, pool.token1, pool.fee, lower, upper, *desired, 0, 0, owner, DEADLINE)
        chain.send(owner, npm, NPM_MINT.encode(params))
        sync(chain, replay, checker, addresses)
        return max(replay.token_pool)

    token_a = mint(owner_a, 1000)  # its share of a swap's fees is far below 1 wei
    token_b = mint(owner_b, replica.liquidity * 7 // 5 + 12_345)  # no round ratio to the rest
    # (the pools' tokens: the mainnet layout's LST has no pool)
    usd = {
        t.address: TOKEN_SPECS[t.symbol][1]
        for t in deployment.tokens.values()
        if t.symbol in TOKEN_SPECS
    }
    decimals = {t.address: t.decimals for t in deployment.tokens.values()}
    capped_blocks = 0
    for cycle in range(40):
        token_in, token_out = (pool.token0, pool.token1)[:: 1 if cycle % 2 else -1]
        # irregular sizes: round fees would give every swap the same fractional wei
        amount_in = int((20_000 + 1_237 * cycle) / usd[token_in] * 10 ** decimals[token_in]) + cycle
        swap = (token_in, token_out, pool.fee, swapper, DEADLINE, amount_in, 0, 0)
        chain.send(swapper, router, ROUTER_EXACT_INPUT_SINGLE.encode(swap))
        collect = (token_a, owner_a, MAX_UINT128, MAX_UINT128)
        chain.send(owner_a, npm, NPM_COLLECT.encode(collect))  # pokes the shared pool position
        sync(chain, replay, checker, addresses)  # the checks include B's static collect
        b = replay.tracker.positions[token_b]
        inside = replica.fee_growth_inside(lower, upper)
        uncapped = position_fees(b.liquidity, *b[5:], *b[3:5], *inside)
        if uncapped != replay.tracker.uncollected(replica, token_b):
            capped_blocks += 1
            if capped_blocks >= 3:
                break
    assert lower <= replica.tick < upper  # the swaps kept both NFTs in range
    # B collects: NPM logs (and subtracts) what it asked for, the pool pays what it holds
    chain.send(owner_b, npm, NPM_COLLECT.encode((token_b, owner_b, MAX_UINT128, MAX_UINT128)))
    sync(chain, replay, checker, addresses)
    assert replay.tracker.positions[token_b][5:] == (0, 0)
    return capped_blocks


def word_edge_swaps(
    devnet: Devnet, chain: Chain, replay: Replay, checker: Checker, addresses: list[str]
) -> None:
    """Swaps across an edge of a tick-bitmap word: exact input and output, with and without a
    price limit, one limit right on the edge. The pool ends a step at a word's edge even with
    no tick initialised there, and the split changes the fee rounding. (The simulator's
    mean-reverting walk does not reach one.)"""
    deployment = devnet.deployment
    pool = next(p for p in deployment.pools if p.tick_spacing == 1)  # words of 256 ticks
    replica = replay.replicas[pool.address]
    edge = ((replica.tick >> 8) + 1) << 8  # the first tick of the next word
    owner, swapper = deployment.wallets[3], deployment.wallets[4]
    lower, upper = edge - 400, edge + 400
    liquidity = replica.liquidity * 3 + 987_654_321  # most of the liquidity across the edge
    amount0, amount1 = replica.modify_amounts(lower, upper, liquidity)
    mint = (pool.token0, pool.token1, pool.fee, lower, upper, 2 * amount0 + 2, 2 * amount1 + 2)
    chain.send(owner, deployment.position_manager, NPM_MINT.encode((*mint, 0, 0, owner, DEADLINE)))
    sync(chain, replay, checker, addresses)
    assert lower < replica.tick < edge

    def needed(zero_for_one: bool, tick: int) -> tuple[int, int]:
        """(input, output) of a swap from here to `tick`, from a copy of the replica."""
        swap = replica.copy().swap(zero_for_one, 2**200, get_sqrt_ratio_at_tick(tick))
        return (swap.amount0, -swap.amount1) if zero_for_one else (swap.amount1, -swap.amount0)

    def send(zero_for_one: bool, exact_input: bool, amount: int, limit_tick: int | None) -> None:
        token_in, token_out = (pool.token0, pool.token1)[:: 1 if zero_for_one else -1]
        limit = 0 if limit_tick is None else get_sqrt_ratio_at_tick(limit_tick)
        if exact_input:
            params = (token_in, token_out, pool.fee, swapper, DEADLINE, amount, 0, limit)
            data = ROUTER_EXACT_INPUT_SINGLE.encode(params)
        else:
            params = (token_in, token_out, pool.fee, swapper, DEADLINE, amount, 2**200, limit)
            data = ROUTER_EXACT_OUTPUT_SINGLE.encode(params)
        chain.send(swapper, deployment.swap_router, data)
        sync(chain, replay, checker, addresses)

    send(False, True, 2 * needed(False, edge + 40)[0], edge + 40)  # up to a limit past the edge
    send(True, False, needed(True, edge - 30)[1] * 9 // 10 + 7, None)  # exact output, down
    send(False, True, needed(False, edge + 25)[0] * 9 // 10 + 3, None)  # exact input, up
    send(True, True, 2 * needed(True, edge)[0], edge)  # down, limit right on the edge
    assert (replica.sqrt_price_x96, replica.tick) == (get_sqrt_ratio_at_tick(edge), edge - 1)
    send(False, False, 2 * needed(False, edge + 10)[1], edge + 10)  # exact output to a limit
    send(True, False, needed(True, edge - 50)[1] * 3 // 4 + 11, None)  # and back down


def test_replica_equals_the_pools_and_the_position_manager(devnet: Devnet) -> None:
    started = time.monotonic()
    deployment = devnet.deployment
    chain = Chain(devnet.rpc_url)
    pools = deployment.pools
    replay = Replay(devnet)
    checker = Checker(chain, replay, pools)
    addresses = [p.address for p in pools] + [deployment.position_manager]
    owner = deployment.deployer  # the factory owner may set and collect protocol fees
    try:
        donor = chain.send(owner, None, FLASH_DONOR_BYTECODE)["contractAddress"].lower()
        for token in deployment.tokens.values():
            chain.send(owner, token.address, ERC20_MINT.encode(donor, 10**40))

        def set_fee_protocol(pool: Pool, fp0: int, fp1: int) -> None:
            chain.send(owner, pool.address, POOL_SET_FEE_PROTOCOL.encode(fp0, fp1))

        def flash(pool: Pool, donation: int) -> None:
            balances = [
                ERC20_BALANCE_OF.decode(
                    rpc(
                        chain.url,
                        "eth_call",
                        [{"to": token, "data": ERC20_BALANCE_OF.encode(pool.address)}, "latest"],
                    )
                )[0]
                for token in (pool.token0, pool.token1)
            ]
            chain.send(
                owner,
                donor,
                DONOR_FLASH.encode(
                    pool.address, balances[0] // 3, balances[1] // 5, donation, donation // 7
                ),
            )

        sync(chain, replay, checker, addresses)  # deployment: Initialize logs only
        for step in range(STEPS):
            if step == 0:
                set_fee_protocol(pools[0], 4, 5)
                set_fee_protocol(pools[2], 10, 6)
            elif step == 8:
                set_fee_protocol(pools[0], 0, 8)
                set_fee_protocol(pools[1], 7, 0)
            elif step in (12, 20):
                for pool in (pools[0], pools[2]):
                    chain.send(
                        owner,
                        pool.address,
                        POOL_COLLECT_PROTOCOL.encode(owner, MAX_UINT128, MAX_UINT128),
                    )
            devnet.simulator.step()
            if step % 3 == 1:
                flash(pools[step % len(pools)], 0 if step % 2 else 10**15 + step)
            sync(chain, replay, checker, addresses)
        capped_blocks = shared_range_rounding(devnet, chain, replay, checker, addresses)
        word_edge_swaps(devnet, chain, replay, checker, addresses)
    finally:
        chain.close()

    # every position NFT ever minted went through the tracker
    minted = minted_token_ids(devnet.rpc_url, deployment.position_manager)
    assert sorted(replay.token_pool) == minted
    assert set(replay.tracker.positions) == set(replay.owners)
    # the test covered what it claims to
    assert replay.kinds["price_limit"] > 0  # the simulator's exactInputSingle with a limit
    for name in (
        "Swap",
        "PoolMint",
        "PoolBurn",
        "Flash",
        "SetFeeProtocol",
        "PoolCollect",
        "CollectProtocol",
        "IncreaseLiquidity",
        "DecreaseLiquidity",
        "Collect",
    ):
        assert replay.events[name] > 0, f"no {name} in the run"
    assert any(r.protocol_fees0 or r.protocol_fees1 for r in replay.replicas.values())
    assert checker.blocks >= STEPS * 5
    assert checker.comparisons[NPM_COLLECT.signature] >= 200 and checker.fees_seen > 100
    assert capped_blocks > 0  # NPM.collect paid less than the NFT's tokensOwed, as predicted
    print(
        f"\n{checker.blocks} blocks, {len(minted)} NFTs, comparisons {dict(checker.comparisons)},"
        f" swap replays {dict(replay.kinds)}, events {dict(replay.events)},"
        f" collect capped by the pool position at {capped_blocks} blocks,"
        f" {time.monotonic() - started:.1f} s"
    )

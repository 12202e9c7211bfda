"""The price sources AaveOracle reads on the devnet, in the two layouts.

- "feeds" (the default for now): every reserve has its own `PriceFeed`
  (devnet/contracts), which emits `AnswerUpdated` itself. Shaped like 2022.
- "mainnet": shaped like Ethereum's Aave market today. WETH's source is Chainlink's
  `EACAggregatorProxy` over an `AccessControlledAggregator` (the real v0.6 bytecode from npm
  @chainlink/abi): the proxy emits nothing, the aggregator behind it emits `AnswerUpdated` when
  a round completes, and the owner can swap the aggregator (a new phase) without any event.
  wstETH's source is our CAPO-shaped `PriceCapAdapter` (price = min(WETH proxy x ratio / 1e18,
  cap)) over a `RatioProvider`; it has no price events at all. The other reserves keep a
  `PriceFeed`, so both shapes are covered.

The deployer is the owner of everything here and the aggregators' only oracle (one submission
completes a round, payment 0, so the LINK token, a devnet MintableERC20, is never moved).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from devnet.contracts import (
    ADAPTER_SET_PRICE_CAP,
    AGGREGATOR_ADD_ACCESS,
    AGGREGATOR_CHANGE_ORACLES,
    AGGREGATOR_LATEST_ROUND,
    AGGREGATOR_SUBMIT,
    FEED_SET_ANSWER,
    PROXY_AGGREGATOR,
    PROXY_CONFIRM_AGGREGATOR,
    PROXY_PROPOSE_AGGREGATOR,
    RATIO_SET_RATE,
    load_artifact,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block

log = logging.getLogger("defimon.devnet")

LAYOUTS = ("feeds", "mainnet")
DEFAULT_LAYOUT = "mainnet"  # the shape of the chains users hold money on (LAYOUTS)

# PriceSource.kind
FEED = "feed"  # our PriceFeed: emits AnswerUpdated itself
CHAINLINK_PROXY = "chainlink_proxy"  # EACAggregatorProxy -> AccessControlledAggregator
CAPO_ADAPTER = "capo_adapter"  # PriceCapAdapter -> base source x RatioProvider, capped

FEED_DECIMALS = 8
# the mainnet layout's LST: its ratio to WETH starts here (18 decimals), its base is WETH
LST_SYMBOL = "wstETH"
LST_BASE = "WETH"
LST_RATIO = Fraction(6, 5)
RATIO_UNIT = 10**18
NO_CAP = 2**255 - 1  # type(int256).max: the cap does not bind ("released")

# AccessControlledAggregator constructor: payment per submission (LINK), round timeout (s),
# the answers it accepts
_AGGREGATOR_PAYMENT = 0
_AGGREGATOR_TIMEOUT = 86_400
_AGGREGATOR_MIN_ANSWER = 1
_AGGREGATOR_MAX_ANSWER = 10**20
_GAS_DEPLOY = {
    "MintableERC20": 2_000_000,
    "AccessControlledAggregator": 6_500_000,
    "EACAggregatorProxy": 2_500_000,
    "RatioProvider": 600_000,
    "PriceCapAdapter": 900_000,
}
_GAS_CALL = 400_000


@dataclass(frozen=True, slots=True)
class PriceSource:
    """What AaveOracle names as one reserve's source, and what stands behind it."""

    kind: str  # FEED, CHAINLINK_PROXY or CAPO_ADAPTER
    address: str  # the source AaveOracle reads (the feed, the proxy or the adapter)
    # CHAINLINK_PROXY: the aggregator(s) deployed with it, phase 1 first. A swap made later by
    # the simulator is not recorded here: read the proxy's aggregator() / phaseId().
    aggregators: tuple[str, ...] = ()
    link_token: str | None = None  # CHAINLINK_PROXY: the LINK its aggregators were given
    base: str | None = None  # CAPO_ADAPTER: BASE_TO_USD_AGGREGATOR (WETH's proxy)
    base_symbol: str | None = None
    ratio_provider: str | None = None  # CAPO_ADAPTER: RATIO_PROVIDER

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PriceSource:
        fields = dict(raw)
        fields["aggregators"] = tuple(raw.get("aggregators", ()))
        return cls(**fields)


def feed_answer(price: Fraction) -> int:
    """A USD price as the feeds and AaveOracle carry it (8 decimals)."""
    return round(price * 10**FEED_DECIMALS)


def ratio_answer(ratio: Fraction) -> int:
    return round(ratio * RATIO_UNIT)


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown devnet layout {layout!r}: expected one of {', '.join(LAYOUTS)}")


def deploy_mainnet_sources(
    rpc: RpcClient, deployer: str, prices: Mapping[str, Fraction]
) -> dict[str, PriceSource]:
    """WETH's proxy and aggregator, wstETH's adapter and ratio provider: 4 blocks.

    Leaves automine off (the caller's mine_block convention).
    """
    erc20 = load_artifact("MintableERC20")
    # block 1: LINK (the aggregator's constructor wants its address) and wstETH's ratio
    link_tx = Tx(
        deployer,
        None,
        erc20.deploy_data(("string", "string", "uint8"), ("ChainLink Token", "LINK", 18)),
        _GAS_DEPLOY["MintableERC20"],
    )
    ratio_tx = _deploy_tx(
        deployer,
        "RatioProvider",
        ("string", "uint256"),
        (f"{LST_SYMBOL} / {LST_BASE} exchange rate", ratio_answer(LST_RATIO)),
    )
    link, ratio_provider = (_created(r) for r in mine_block(rpc, [link_tx, ratio_tx]))
    # block 2: WETH's aggregator (phase 1)
    aggregator = _created(mine_block(rpc, [_aggregator_tx(deployer, link)])[0])
    # block 3: the proxy over it (no access controller: anyone may read, as on mainnet), the
    # deployer as the aggregator's only oracle, and the first round
    receipts = mine_block(
        rpc,
        [
            _deploy_tx(
                deployer,
                "EACAggregatorProxy",
                ("address", "address"),
                (aggregator, "0x" + "00" * 20),
            ),
            *_oracle_setup_txs(deployer, aggregator, feed_answer(prices[LST_BASE])),
        ],
    )
    proxy = _created(receipts[0])
    # block 4: the proxy may read the aggregator (it checks access against msg.sender), and
    # the adapter over the proxy and the ratio provider, with no cap binding
    receipts = mine_block(
        rpc,
        [
            Tx(deployer, aggregator, AGGREGATOR_ADD_ACCESS.encode(proxy), _GAS_CALL),
            _deploy_tx(
                deployer,
                "PriceCapAdapter",
                ("address", "address", "uint8", "string", "int256"),
                (proxy, ratio_provider, FEED_DECIMALS, f"Capped {LST_SYMBOL} / USD", NO_CAP),
            ),
        ],
    )
    adapter = _created(receipts[1])
    return {
        LST_BASE: PriceSource(
            kind=CHAINLINK_PROXY, address=proxy, aggregators=(aggregator,), link_token=link
        ),
        LST_SYMBOL: PriceSource(
            kind=CAPO_ADAPTER,
            address=adapter,
            base=proxy,
            base_symbol=LST_BASE,
            ratio_provider=ratio_provider,
        ),
    }


def swap_aggregator(rpc: RpcClient, deployer: str, source: PriceSource, answer: int) -> str:
    """Deploy a new aggregator, give it a first round at `answer`, then point the proxy at it
    (`proposeAggregator` + `confirmAggregator`: a new phase, and no event from the proxy).

    Three blocks: the deployment, the oracle set-up and first round (the new aggregator emits
    AnswerUpdated while the proxy still reads the old one), the swap. Returns the new
    aggregator; leaves automine on.
    """
    if source.kind != CHAINLINK_PROXY or source.link_token is None:
        raise ValueError(f"only a Chainlink proxy's aggregator can be swapped, not a {source.kind}")
    try:
        aggregator = _created(mine_block(rpc, [_aggregator_tx(deployer, source.link_token)])[0])
        mine_block(
            rpc,
            [
                *_oracle_setup_txs(deployer, aggregator, answer),
                Tx(deployer, aggregator, AGGREGATOR_ADD_ACCESS.encode(source.address), _GAS_CALL),
            ],
        )
        mine_block(
            rpc,
            [
                Tx(
                    deployer, source.address, PROXY_PROPOSE_AGGREGATOR.encode(aggregator), _GAS_CALL
                ),
                Tx(
                    deployer, source.address, PROXY_CONFIRM_AGGREGATOR.encode(aggregator), _GAS_CALL
                ),
            ],
        )
    finally:
        rpc.call("evm_setAutomine", [True])
    return aggregator


def current_aggregator(rpc: RpcClient, proxy: str) -> str:
    answer = rpc.call("eth_call", [{"to": proxy, "data": PROXY_AGGREGATOR.encode()}, "latest"])
    return str(PROXY_AGGREGATOR.decode(answer)[0]).lower()


def set_answer_tx(rpc: RpcClient, deployer: str, source: PriceSource, answer: int) -> Tx:
    """The transaction that moves a settable source to `answer` (8 decimals).

    A feed takes `setAnswer`; a Chainlink proxy's current aggregator takes the next round's
    submission (one oracle: the round completes at once and emits AnswerUpdated).
    """
    if source.kind == FEED:
        return Tx(deployer, source.address, FEED_SET_ANSWER.encode(answer), _GAS_CALL)
    if source.kind == CHAINLINK_PROXY:
        aggregator = current_aggregator(rpc, source.address)
        latest = rpc.call(
            "eth_call", [{"to": aggregator, "data": AGGREGATOR_LATEST_ROUND.encode()}, "latest"]
        )
        round_id = AGGREGATOR_LATEST_ROUND.decode(latest)[0] + 1
        return Tx(deployer, aggregator, AGGREGATOR_SUBMIT.encode(round_id, answer), _GAS_CALL)
    raise ValueError(
        f"a {source.kind} has no answer of its own to set: move its inputs "
        "(the base source, the ratio or the cap)"
    )


def set_ratio_tx(deployer: str, source: PriceSource, ratio: int) -> Tx:
    if source.ratio_provider is None:
        raise ValueError(f"a {source.kind} has no ratio provider")
    return Tx(deployer, source.ratio_provider, RATIO_SET_RATE.encode(ratio), _GAS_CALL)


def set_cap_tx(deployer: str, source: PriceSource, cap: int) -> Tx:
    if source.kind != CAPO_ADAPTER:
        raise ValueError(f"a {source.kind} has no price cap")
    return Tx(deployer, source.address, ADAPTER_SET_PRICE_CAP.encode(cap), _GAS_CALL)


def _deploy_tx(deployer: str, name: str, types: tuple[str, ...], args: tuple[Any, ...]) -> Tx:
    return Tx(deployer, None, load_artifact(name).deploy_data(types, args), _GAS_DEPLOY[name])


def _created(receipt: dict[str, Any]) -> str:
    return str(receipt["contractAddress"]).lower()


def _aggregator_tx(deployer: str, link: str) -> Tx:
    return _deploy_tx(
        deployer,
        "AccessControlledAggregator",
        ("address", "uint128", "uint32", "address", "int256", "int256", "uint8", "string"),
        (
            link,
            _AGGREGATOR_PAYMENT,
            _AGGREGATOR_TIMEOUT,
            "0x" + "00" * 20,  # no validator
            _AGGREGATOR_MIN_ANSWER,
            _AGGREGATOR_MAX_ANSWER,
            FEED_DECIMALS,
            f"{LST_BASE} / USD",
        ),
    )


def _oracle_setup_txs(deployer: str, aggregator: str, answer: int) -> list[Tx]:
    """The deployer as the only oracle (1 submission answers a round), then round 1."""
    change = AGGREGATOR_CHANGE_ORACLES.encode([], [deployer], [deployer], 1, 1, 0)
    return [
        Tx(deployer, aggregator, change, _GAS_CALL),
        Tx(deployer, aggregator, AGGREGATOR_SUBMIT.encode(1, answer), _GAS_CALL),
    ]

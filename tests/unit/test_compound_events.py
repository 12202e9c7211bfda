"""Comet log decoding: logs ABI-encoded with eth_abi from Comet's own event signatures
(compound-finance/comet contracts/CometMainInterface.sol), topics hashed with eth_utils."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from protocols.compound_v3 import events as ev
from schemas.chain import RawLog

COMET = "0xc3d688b66703497daa19211eedff47f25384cdc3"
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
WETH = "0x" + "e7" * 20
ZERO = "0x" + "00" * 20

# The signatures exactly as Comet declares them (parameter names dropped, `uint` -> uint256).
SIGNATURES = {
    "SUPPLY": "Supply(address,address,uint256)",
    "WITHDRAW": "Withdraw(address,address,uint256)",
    "TRANSFER": "Transfer(address,address,uint256)",
    "SUPPLY_COLLATERAL": "SupplyCollateral(address,address,address,uint256)",
    "WITHDRAW_COLLATERAL": "WithdrawCollateral(address,address,address,uint256)",
    "TRANSFER_COLLATERAL": "TransferCollateral(address,address,address,uint256)",
    "ABSORB_DEBT": "AbsorbDebt(address,address,uint256,uint256)",
    "ABSORB_COLLATERAL": "AbsorbCollateral(address,address,address,uint256,uint256)",
    "BUY_COLLATERAL": "BuyCollateral(address,address,uint256,uint256)",
    "UPGRADED": "Upgraded(address)",
}


def t0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def indexed(address: str) -> str:
    return "0x" + encode(["address"], [address]).hex()


def make_log(signature: str, topics: list[str], types: list[str], values: list[object]) -> RawLog:
    data = "0x" + encode(types, values).hex()
    return RawLog(1, 100, "0xbb", 3, "0xtx", 0, COMET, (t0(signature), *topics), data)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_topics_are_the_keccak_of_comets_signatures(name: str) -> None:
    assert getattr(ev, name) == t0(SIGNATURES[name])


def test_supply_credits_dst() -> None:
    log = make_log(
        SIGNATURES["SUPPLY"], [indexed(BOB), indexed(ALICE)], ["uint256"], [1_000 * 10**6]
    )
    assert ev.decode(log) == [ev.BaseChanged("supply", ALICE, BOB, 1_000 * 10**6)]


def test_withdraw_debits_src() -> None:
    log = make_log(SIGNATURES["WITHDRAW"], [indexed(ALICE), indexed(BOB)], ["uint256"], [15])
    assert ev.decode(log) == [ev.BaseChanged("withdraw", ALICE, BOB, 15)]


def test_transfer_between_accounts_is_two_changes() -> None:
    log = make_log(SIGNATURES["TRANSFER"], [indexed(ALICE), indexed(BOB)], ["uint256"], [7])
    assert ev.decode(log) == [
        ev.BaseChanged("transfer_out", ALICE, BOB, 7),
        ev.BaseChanged("transfer_in", BOB, ALICE, 7),
    ]


def test_transfer_from_zero_address_only_touches_the_account() -> None:
    # supplyBase pairs its Supply with Transfer(address(0), dst, amount).
    log = make_log(SIGNATURES["TRANSFER"], [indexed(ZERO), indexed(ALICE)], ["uint256"], [7])
    assert ev.decode(log) == [ev.BaseChanged("transfer_in", ALICE, ZERO, 7)]


def test_collateral_events() -> None:
    amount = 10 * 10**18
    supply = make_log(
        SIGNATURES["SUPPLY_COLLATERAL"],
        [indexed(BOB), indexed(ALICE), indexed(WETH)],
        ["uint256"],
        [amount],
    )
    withdraw = make_log(
        SIGNATURES["WITHDRAW_COLLATERAL"],
        [indexed(ALICE), indexed(BOB), indexed(WETH)],
        ["uint256"],
        [amount],
    )
    transfer = make_log(
        SIGNATURES["TRANSFER_COLLATERAL"],
        [indexed(ALICE), indexed(BOB), indexed(WETH)],
        ["uint256"],
        [amount],
    )
    assert ev.decode(supply) == [
        ev.CollateralChanged("supply_collateral", ALICE, BOB, WETH, amount)
    ]
    assert ev.decode(withdraw) == [
        ev.CollateralChanged("withdraw_collateral", ALICE, BOB, WETH, amount)
    ]
    assert ev.decode(transfer) == [
        ev.CollateralChanged("transfer_collateral_out", ALICE, BOB, WETH, amount),
        ev.CollateralChanged("transfer_collateral_in", BOB, ALICE, WETH, amount),
    ]


def test_liquidation_events() -> None:
    debt = make_log(
        SIGNATURES["ABSORB_DEBT"],
        [indexed(BOB), indexed(ALICE)],
        ["uint256", "uint256"],
        [15_810 * 10**6, 15_810 * 10**8],
    )
    seized = make_log(
        SIGNATURES["ABSORB_COLLATERAL"],
        [indexed(BOB), indexed(ALICE), indexed(WETH)],
        ["uint256", "uint256"],
        [10 * 10**18, 17_000 * 10**8],
    )
    bought = make_log(
        SIGNATURES["BUY_COLLATERAL"],
        [indexed(BOB), indexed(WETH)],
        ["uint256", "uint256"],
        [1_000 * 10**6, 6 * 10**17],
    )
    assert ev.decode(debt) == [ev.AbsorbDebt(BOB, ALICE, 15_810 * 10**6, 15_810 * 10**8)]
    assert ev.decode(seized) == [ev.AbsorbCollateral(BOB, ALICE, WETH, 10 * 10**18, 17_000 * 10**8)]
    assert ev.decode(bought) == [ev.BuyCollateral(BOB, WETH, 1_000 * 10**6, 6 * 10**17)]


def test_upgrade_and_ignored_events() -> None:
    impl = "0x" + "11" * 20
    assert ev.decode(make_log(SIGNATURES["UPGRADED"], [indexed(impl)], [], [])) == [
        ev.Upgraded(impl)
    ]
    pause = make_log("PauseAction(bool,bool,bool,bool,bool)", [], ["bool"] * 5, [True] * 5)
    approval = make_log(
        "Approval(address,address,uint256)", [indexed(ALICE), indexed(BOB)], ["uint256"], [1]
    )
    assert ev.decode(pause) is None
    assert ev.decode(approval) is None


def test_touched_accounts_and_collateral() -> None:
    decoded: list[ev.Event] = [
        ev.BaseChanged("transfer_in", ALICE, ZERO, 1),
        ev.CollateralChanged("transfer_collateral_out", ALICE, BOB, WETH, 1),
        ev.CollateralChanged("transfer_collateral_in", BOB, ALICE, WETH, 1),
        ev.AbsorbDebt(ZERO, ALICE, 1, 1),
        ev.BuyCollateral(BOB, WETH, 1, 1),
    ]
    accounts, pairs = ev.touched(decoded)
    assert accounts == {ALICE, BOB}
    assert pairs == {(ALICE, WETH), (BOB, WETH)}


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        (
            make_log(SIGNATURES["SUPPLY"], [indexed(ALICE)], ["uint256"], [1]),
            "2 topics, expected 3",
        ),
        (
            make_log(
                SIGNATURES["SUPPLY"], [indexed(ALICE), indexed(BOB)], ["uint256", "uint256"], [1, 2]
            ),
            "data is 64 bytes, expected 32",
        ),
        (
            make_log(
                SIGNATURES["SUPPLY_COLLATERAL"],
                [indexed(ALICE), "0x" + "ff" * 32, indexed(WETH)],
                ["uint256"],
                [1],
            ),
            "address word has high bits set",
        ),
        (
            make_log("Mystery(uint256)", [], ["uint256"], [1]),
            "unknown topic",
        ),
        (
            RawLog(1, 1, "0xbb", 0, "0xtx", 0, COMET, (), "0x"),
            "anonymous log",
        ),
    ],
)
def test_wrong_shapes_are_decode_errors_with_a_reason(log: RawLog, reason: str) -> None:
    with pytest.raises(ev.DecodeError, match=reason):
        ev.decode(log)

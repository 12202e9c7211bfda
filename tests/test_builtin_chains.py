"""The built-in chain configs and the command line that chooses chains (no network needed).

Each built-in loads, names the right chain id, spells every address as a valid EIP-55
checksum (a typo in one character fails it), cites a source for every address, and
round-trips through `to_toml`. `--chain`, `--rpc`, `--ws` and `--from-block` resolve to the
endpoints the flow gets, with clear errors for what cannot be resolved.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from eth_utils import is_checksum_address

from defimon.chains import choose_chains, endpoints_from_args, load_chain
from defimon.cli import build_parser, main
from schemas.chain_config import DEFAULT_MIN_DEPTH_USD, ChainConfig, builtin_names
from schemas.errors import ConfigError

EXPECTED_IDS = {"ethereum": 1, "arbitrum": 42161, "base": 8453, "optimism": 10, "polygon": 137}
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
CITATION = re.compile(r"#.*(https://docs\.|github\.com/)")


def builtin_text(name: str) -> str:
    return (resources.files("schemas") / "chains" / f"{name}.toml").read_text(encoding="utf-8")


def test_the_builtins_are_the_five_chains() -> None:
    assert set(builtin_names()) == set(EXPECTED_IDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_IDS))
def test_builtin_loads_with_its_chain_id_and_protocols(name: str) -> None:
    config = ChainConfig.builtin(name)
    assert config.chain_id == EXPECTED_IDS[name]
    assert config.name == name
    assert config.aave_v3 is not None
    assert config.compound_v3 is not None and len(config.compound_v3.comets) >= 1
    assert config.usd_tokens, "price routing needs USD roots"
    assert config.finality_depth >= 64
    assert config.rpc_http and all(u.startswith("https://") for u in config.rpc_http)
    assert config.rpc_ws is not None and config.rpc_ws.startswith("wss://")
    # Round trip: what to_toml writes loads back to the same config.
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config


@pytest.mark.parametrize("name", sorted(EXPECTED_IDS))
def test_every_address_is_checksummed_and_cited(name: str) -> None:
    lines = builtin_text(name).splitlines()
    found = 0
    for number, line in enumerate(lines):
        code = line.split("#", 1)[0]
        for address in ADDRESS.findall(code):
            found += 1
            assert is_checksum_address(address), f"{name}.toml:{number + 1} {address}"
            # The citation is a comment above the value, within its table entry.
            back = number - 1
            while back >= 0 and lines[back].strip() and not lines[back].startswith("["):
                if CITATION.search(lines[back]):
                    break
                back -= 1
            else:
                back = -1
            assert back >= 0 and CITATION.search(lines[back]), (
                f"{name}.toml:{number + 1} {address} has no cited source above it"
            )
    assert found >= 8  # factory, NPM, 2+ USD tokens, pool, configurator, oracle, a comet


def test_same_protocol_address_differs_per_chain_where_the_docs_say_so() -> None:
    """Base's Uniswap deployment is not at the canonical addresses: a copy-paste would show."""
    base, ethereum = ChainConfig.builtin("base"), ChainConfig.builtin("ethereum")
    assert base.uniswap_v3 is not None and ethereum.uniswap_v3 is not None
    assert base.uniswap_v3.factory != ethereum.uniswap_v3.factory
    assert base.uniswap_v3.position_manager != ethereum.uniswap_v3.position_manager


def test_one_chain_uses_its_defaults_or_the_given_urls() -> None:
    (default,) = endpoints_from_args(["ethereum"])
    config = ChainConfig.builtin("ethereum")
    assert (default.rpc_url, default.ws_url) == (config.rpc_http[0], config.rpc_ws)
    assert default.from_block is None
    (own,) = endpoints_from_args(
        ["ethereum"], ["https://node.example/rpc?key=a=b"], [], ["19000000"]
    )
    # A private node without --ws polls; it does not mix in the public WebSocket.
    assert (own.rpc_url, own.ws_url, own.from_block) == (
        "https://node.example/rpc?key=a=b",
        None,
        19000000,
    )


def test_several_chains_take_chain_prefixed_values() -> None:
    endpoints = endpoints_from_args(
        ["ethereum", "base", "polygon"],
        ["base=https://base.example", "1=https://eth.example"],
        ["ethereum=wss://eth.example"],
        ["8453=100"],
    )
    by_id = {e.config.chain_id: e for e in endpoints}
    assert list(by_id) == [1, 8453, 137]  # the order given
    assert (by_id[1].rpc_url, by_id[1].ws_url, by_id[1].from_block) == (
        "https://eth.example",
        "wss://eth.example",
        None,
    )
    assert (by_id[8453].rpc_url, by_id[8453].ws_url, by_id[8453].from_block) == (
        "https://base.example",
        None,
        100,
    )
    polygon = ChainConfig.builtin("polygon")
    assert (by_id[137].rpc_url, by_id[137].ws_url) == (polygon.rpc_http[0], polygon.rpc_ws)
    # Extra URLs for one chain are kept for rotation; the endpoint takes the first for now.
    (choice,) = choose_chains(["base"], ["https://a.example", "https://b.example"])
    assert choice.rpc_urls == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(
    ("chains", "rpc", "ws", "start", "message"),
    [
        (["mainnet"], [], [], [], "built-ins are arbitrum, base, ethereum, optimism, polygon"),
        (["ethereum", "base"], ["https://x.example"], [], [], "--rpc CHAIN=https://x.example"),
        (["ethereum"], ["gnosis=https://x.example"], [], [], "'gnosis' is not a chain given"),
        (["ethereum", "ethereum"], [], [], [], "chain id 1 is named twice"),
        (["ethereum"], [], [], ["soon"], "'soon' is not a block number"),
        (["ethereum", "base"], [], ["base=wss://a", "base=wss://b"], [], "--ws names chain base"),
        ([], [], [], [], "name a chain with --chain"),
    ],
)
def test_unresolvable_arguments_get_a_clear_error(
    chains: list[str], rpc: list[str], ws: list[str], start: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        choose_chains(chains, rpc, ws, start)


def test_a_path_loads_a_toml_config_and_needs_an_rpc_without_defaults(tmp_path: Path) -> None:
    config = ChainConfig.builtin("arbitrum")
    bare = ChainConfig(config.chain_id, config.uniswap_v3, name="mine")
    path = tmp_path / "mine.toml"
    path.write_text(bare.to_toml())
    assert load_chain(str(path)) == bare
    with pytest.raises(ConfigError, match="has no RPC endpoint: pass --rpc URL"):
        choose_chains([str(path)])
    (endpoint,) = endpoints_from_args([str(path)], ["http://127.0.0.1:8545"])
    assert endpoint.config == bare and endpoint.rpc_url == "http://127.0.0.1:8545"
    with pytest.raises(ConfigError, match="cannot read chain config"):
        load_chain(str(tmp_path / "missing.toml"))


def test_rpc_table_rejects_what_is_not_a_url() -> None:
    raw = tomllib.loads(builtin_text("base"))
    raw["rpc"] = {"http": ["ftp://x"]}
    with pytest.raises(ConfigError, match="does not start with http:// or https://"):
        ChainConfig.from_dict(raw)
    raw["rpc"] = {"http": "https://one.example", "ws": "https://not-a-socket"}
    with pytest.raises(ConfigError, match="ws URL"):
        ChainConfig.from_dict(raw)


def test_min_depth_usd_defaults_parses_round_trips_and_rejects_nonsense() -> None:
    raw = tomllib.loads(builtin_text("base"))
    assert ChainConfig.from_dict(raw).min_depth_usd == DEFAULT_MIN_DEPTH_USD == 10_000
    del raw["pricing"]["min_depth_usd"]
    assert ChainConfig.from_dict(raw).min_depth_usd == DEFAULT_MIN_DEPTH_USD
    for value in (0, 2500.5, 10**7):
        raw["pricing"]["min_depth_usd"] = value
        config = ChainConfig.from_dict(raw)
        assert config.min_depth_usd == value
        assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    # A config with nothing else in [pricing] keeps its threshold through to_toml too.
    bare = ChainConfig(config.chain_id, config.uniswap_v3, min_depth_usd=0)
    assert ChainConfig.from_dict(tomllib.loads(bare.to_toml())).min_depth_usd == 0
    for bad in (-1, "10000", True, float("inf"), float("nan")):
        raw["pricing"]["min_depth_usd"] = bad
        with pytest.raises(ConfigError, match=r"\[pricing\] min_depth_usd must be"):
            ChainConfig.from_dict(raw)


def test_cli_accepts_chain_config_as_an_alias_and_repeats() -> None:
    args = build_parser().parse_args(
        ["run", "--chain-config", "a.toml", "--chain", "base", "--rpc", "base=https://b"]
    )
    assert args.chain == ["a.toml", "base"]
    assert args.rpc == ["base=https://b"]


def test_cli_chains_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chains"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["name", "chain"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert {name: int(row[1]) for name, row in rows.items()} == EXPECTED_IDS
    assert all(row[2] == "uniswap_v3,aave_v3,compound_v3" for row in rows.values())


def test_cli_run_with_an_unknown_chain_exits_with_the_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["run", "--chain", "solana", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "built-ins are arbitrum, base, ethereum, optimism, polygon" in capsys.readouterr().err


def test_aave_version_may_be_pinned_and_is_validated() -> None:
    raw = tomllib.loads(builtin_text("ethereum"))
    assert ChainConfig.from_dict(raw).aave_v3.version is None  # type: ignore[union-attr]
    for given, pinned in (("3.7", "3.7"), ("v3.2.1", "3.2"), ("3.0", "3.0.2"), ("3.5.0", "3.5")):
        raw["aave_v3"]["version"] = given
        config = ChainConfig.from_dict(raw)
        assert config.aave_v3 is not None and config.aave_v3.version == pinned
        assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    for wrong in ("3.8", "4", "latest", 3.7):
        raw["aave_v3"]["version"] = wrong
        with pytest.raises(ConfigError, match=r"\[aave_v3\] version .* is not a known Aave"):
            ChainConfig.from_dict(raw)

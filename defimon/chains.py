"""Command-line chain selection: `--chain`, `--rpc`, `--ws`, `--from-block` → ChainEndpoints.

Shared by every command that follows chains (`run`, and `flow` in the multi-process mode):

- `--chain NAME|PATH` (repeatable): a built-in chain (`defimon chains` lists them) or a TOML
  chain config file.
- `--rpc URL` when one chain is followed, else `--rpc CHAIN=URL` (repeatable; CHAIN is the
  chain's name or id). A chain without one uses its config's `[rpc] http` defaults (the
  built-ins name free public endpoints).
- `--ws` likewise. A chain given its own `--rpc` but no `--ws` polls over HTTP rather than
  mixing a public WebSocket with a private node.
- `--from-block N` (one chain) or `CHAIN=N`: where a fresh backfill starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from flows.endpoint import ChainEndpoint
from flows.rpc import RpcOptions
from schemas.chain_config import ChainConfig, builtin_names
from schemas.errors import ConfigError
from schemas.hexutil import decimal_uint

log = structlog.get_logger("defimon.chains")

# CHAIN=VALUE, where CHAIN is a name or an id: no ':' or '/' before the '=' (a URL has both).
_ASSIGNMENT = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")


@dataclass(frozen=True, slots=True)
class ChainChoice:
    """A chain to follow and how to reach it, before it becomes a ChainEndpoint."""

    config: ChainConfig
    rpc_urls: tuple[str, ...]
    ws_url: str | None
    from_block: int | None

    def endpoint(self, options: RpcOptions | None = None) -> ChainEndpoint:
        # Every HTTP URL is rotated over (flows/rpc.py); the first is the preferred one.
        return ChainEndpoint(
            self.config,
            self.rpc_urls[0],
            self.ws_url,
            self.from_block,
            rpc_urls=self.rpc_urls[1:],
            rpc_options=options,
        )


def load_chain(spec: str) -> ChainConfig:
    """A built-in chain by name, else a TOML chain config by path."""
    if spec in builtin_names():
        return ChainConfig.builtin(spec)
    path = Path(spec)
    if path.suffix == ".toml" or path.exists() or "/" in spec:
        return ChainConfig.load(path)
    raise ConfigError(
        f"unknown chain {spec!r}: built-ins are {', '.join(builtin_names())}; "
        "or give the path of a TOML chain config"
    )


def choose_chains(
    chains: Sequence[str],
    rpc: Sequence[str] = (),
    ws: Sequence[str] = (),
    from_block: Sequence[str] = (),
) -> list[ChainChoice]:
    """The chains the arguments name, each with its endpoints (pure apart from reading configs)."""
    if not chains:
        raise ConfigError(f"name a chain with --chain ({', '.join(builtin_names())} or a path)")
    configs = [load_chain(spec) for spec in chains]
    ids = [c.chain_id for c in configs]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"chain id {duplicated[0]} is named twice in --chain")
    aliases = _aliases(chains, configs)
    rpcs = _assign("--rpc", rpc, aliases, len(configs))
    sockets = _assign("--ws", ws, aliases, len(configs))
    starts = _assign("--from-block", from_block, aliases, len(configs))
    choices = []
    for config in configs:
        cid = config.chain_id
        # Several URLs for one chain: repeated, or comma-separated.
        given = tuple(
            dict.fromkeys(u.strip() for v in rpcs.get(cid, ()) for u in v.split(",") if u.strip())
        )
        urls = given or config.rpc_http
        if not urls:
            raise ConfigError(
                f"chain {config.label} has no RPC endpoint: pass --rpc "
                + (f"{config.label}=URL" if len(configs) > 1 else "URL")
            )
        if len(sockets.get(cid, ())) > 1:
            raise ConfigError(f"--ws names chain {config.label} twice")
        socket = next(iter(sockets.get(cid, ())), None)
        if socket is None and not given:
            socket = config.rpc_ws  # the defaults go together: the config's HTTP and WebSocket
        start = None
        if cid in starts:
            if len(starts[cid]) > 1:
                raise ConfigError(f"--from-block names chain {config.label} twice")
            start = decimal_uint(starts[cid][0])
            if start is None:
                raise ConfigError(f"--from-block {starts[cid][0]!r} is not a block number")
        choices.append(ChainChoice(config, urls, socket, start))
    return choices


def endpoints_from_args(
    chains: Sequence[str],
    rpc: Sequence[str] = (),
    ws: Sequence[str] = (),
    from_block: Sequence[str] = (),
    options: RpcOptions | None = None,
) -> list[ChainEndpoint]:
    """`choose_chains` as the ChainEndpoints the flow takes."""
    return [c.endpoint(options) for c in choose_chains(chains, rpc, ws, from_block)]


def _aliases(specs: Sequence[str], configs: Sequence[ChainConfig]) -> dict[str, int]:
    """The names a CHAIN=... prefix may use for each chain: its id, its name, its --chain."""
    aliases: dict[str, int] = {}
    for spec, config in zip(specs, configs, strict=True):
        for alias in {str(config.chain_id), config.name, spec}:
            if alias:
                aliases[alias] = config.chain_id
    return aliases


def _assign(
    flag: str, values: Sequence[str], aliases: dict[str, int], chains: int
) -> dict[int, list[str]]:
    """`VALUE` (one chain only) or `CHAIN=VALUE` per value, grouped by chain id."""
    out: dict[int, list[str]] = {}
    for value in values:
        match = _ASSIGNMENT.match(value)
        if match is None:
            if chains > 1:
                raise ConfigError(
                    f"{flag} {value!r}: several chains are followed, so say which: "
                    f"{flag} CHAIN={value} (CHAIN is a name or chain id)"
                )
            out.setdefault(next(iter(aliases.values())), []).append(value)
            continue
        name, rest = match.groups()
        if name not in aliases:
            known = ", ".join(sorted(a for a in aliases if not a.isdigit()))
            raise ConfigError(
                f"{flag} {value!r}: {name!r} is not a chain given with --chain ({known})"
            )
        out.setdefault(aliases[name], []).append(rest)
    return out

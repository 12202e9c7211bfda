"""The `defimon` command: demo, run, chains, flow, api, devnet, sql, keys."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from defimon import __version__
from defimon.logs import configure
from ports.keys import KeyFile, parse_scopes
from ports.settings import Settings
from schemas.chain_config import ChainConfig
from schemas.errors import ConfigError, DefimonError, InvalidInput
from schemas.hexutil import normalize_address

if TYPE_CHECKING:  # the heavy modules load only for the command that needs them
    from defimon.instance import Instance
    from defimon.nats_bus import NatsConfig
    from flows.endpoint import ChainEndpoint

log = structlog.get_logger("defimon.cli")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve(
    instance: Instance, *, start: Callable[[], None] | None = None, reuse_port: bool = False
) -> None:
    """Serve the API over `instance`'s ports; `start` (the flow, in the one-process runtime)
    runs once the bus is attached, and the instance stops when the server does. `reuse_port`:
    one of several processes listening on the same port (defimon/api_processes.py)."""
    import uvicorn

    from api.app import create_app

    app = create_app(instance.api_parts(), on_start=start, on_stop=instance.stop)
    settings = instance.settings
    host = bind_host(settings.host, KeyFile(settings.keys_path).configured)
    sockets = None
    if reuse_port:
        from defimon.api_processes import reuse_port_socket

        sockets = [reuse_port_socket(host, settings.port)]
    config = uvicorn.Config(
        app,
        host=host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    stopped_by: list[int] = []

    def graceful_stop_done(signum: int, frame: object) -> None:
        # uvicorn handles SIGINT/SIGTERM while it serves: it stops accepting requests, runs the
        # lifespan shutdown (instance.stop: a Runtime's flow ends and its sinks flush) and then
        # re-raises the signal, which lands here. Everything processed is stored by then, so the
        # process exits normally (code 0) instead of dying of the signal. A signal in the instant
        # before uvicorn takes over asks the server to exit at once.
        stopped_by.append(signum)
        server.should_exit = True

    previous = {s: signal.signal(s, graceful_stop_done) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped_by:
        log.info("run.stopped", signal=signal.Signals(stopped_by[0]).name)


def bind_host(requested: str, keys_configured: bool) -> str:
    """Without an API key the API is open, so it listens on loopback only, and says so."""
    if keys_configured:
        return requested
    if requested not in LOOPBACK:
        log.warning(
            "api.loopback_only",
            asked=requested,
            reason="no API key configured; create one with `defimon keys create`",
        )
        return "127.0.0.1"
    log.info("api.open_to_this_machine", reason="no API key configured", host=requested)
    return requested


def add_chain_args(parser: argparse.ArgumentParser) -> None:
    """Which chains to follow and through which nodes: the same for run, flow and api."""
    parser.add_argument(
        "--chain",
        "--chain-config",
        dest="chain",
        action="append",
        required=True,
        metavar="NAME|PATH",
        help="a built-in chain (ethereum, arbitrum, base, optimism, polygon) or a TOML chain "
        "config; repeat for several chains",
    )
    parser.add_argument(
        "--rpc",
        action="append",
        default=[],
        metavar="[CHAIN=]URL",
        help="HTTP JSON-RPC URL; repeat (or comma-separate) for several endpoints, rotated; "
        "with several chains CHAIN=URL (CHAIN: name or chain id). "
        "Default: the chain config's [rpc] http",
    )
    parser.add_argument(
        "--ws",
        action="append",
        default=[],
        metavar="[CHAIN=]URL",
        help="WebSocket URL for newHeads (else polling); CHAIN=URL with several chains",
    )
    parser.add_argument(
        "--from-block",
        action="append",
        default=[],
        metavar="[CHAIN=]N",
        help="start a fresh backfill here (default: the config's start_block)",
    )


def chain_endpoints(args: argparse.Namespace, settings: Settings) -> list[ChainEndpoint]:
    from defimon.chains import endpoints_from_args
    from flows.rpc import RpcOptions

    return endpoints_from_args(
        args.chain or [], args.rpc, args.ws, args.from_block, RpcOptions.from_settings(settings)
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from defimon.runtime import Runtime
    from flows.rpc import redact_url

    watch = watch_wallets(args.watch)
    endpoints = [dataclasses.replace(e, watch=watch) for e in chain_endpoints(args, settings)]
    runtime = Runtime(settings, endpoints)
    for endpoint in endpoints:
        log.info(
            "run.chain",
            chain_id=endpoint.config.chain_id,
            name=endpoint.config.label,
            rpc=[redact_url(url) for url in endpoint.http_urls],
            ws=redact_url(endpoint.ws_url) if endpoint.ws_url else None,
        )
    log.info(
        "run.start",
        chains=len(endpoints),
        mode="watch" if watch is not None else "full",
        url=f"http://{settings.host}:{settings.port}/",
    )
    _serve(runtime, start=runtime.start_flow)
    return 0


def watch_wallets(given: list[str] | None) -> tuple[str, ...] | None:
    """`--watch` wallets (wallet watch mode, on every chain given), or None for the
    full-protocol mode."""
    if not given:
        return None
    try:
        return tuple(dict.fromkeys(normalize_address(w) for w in given))
    except InvalidInput as exc:
        raise ConfigError(f"--watch: {exc}") from None


def cmd_chains(args: argparse.Namespace, settings: Settings) -> int:
    """The built-in chains, their ids and the protocols each config follows."""
    from schemas.chain_config import builtin_names

    rows = [("name", "chain id", "protocols", "start block", "finality", "default rpc")]
    for name in builtin_names():
        config = ChainConfig.builtin(name)
        rows.append(
            (
                name,
                str(config.chain_id),
                ",".join(config.protocols),
                str(config.start_block),
                str(config.finality_depth),
                config.rpc_http[0] if config.rpc_http else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(
        "\nPublic endpoints are rate limited; pass your own with --rpc CHAIN=URL.",
        file=sys.stderr,
    )
    return 0


def nats_config(settings: Settings, command: str) -> NatsConfig:
    from defimon.nats_bus import NatsConfig

    if not settings.nats_url:
        raise ConfigError(f"defimon {command} needs NATS: set DEFIMON_NATS_URL or --nats-url")
    return NatsConfig(
        settings.nats_url,
        stream=settings.nats_stream,
        max_msgs=settings.nats_max_msgs,
        max_age_seconds=settings.nats_max_age_seconds,
        duplicate_window_seconds=settings.nats_duplicate_window_seconds,
        buffer_events=settings.nats_buffer_events,
    )


def cmd_flow(args: argparse.Namespace, settings: Settings) -> int:
    """The dataflow, its store writes and the NATS publishing; no API."""
    from defimon.ch_http import ChdbHttpEngine, ClickHouseHttpServer, store_users
    from defimon.flow_health import FlowHealthServer
    from defimon.nats_bus import NatsBus
    from defimon.runtime import Runtime
    from ports.analyst_sql import SqlLimits

    bus = NatsBus(nats_config(settings, "flow"))
    if args.store_http_port is not None and settings.clickhouse_url:
        raise ConfigError(
            "--store-http-port serves the embedded chDB store; unset the ClickHouse URL"
        )
    addresses = args.addresses.split(";") if args.addresses else None
    if addresses and not settings.clickhouse_url:
        raise ConfigError(
            "several flow processes need one store: a ClickHouse server (DEFIMON_CLICKHOUSE_URL); "
            "chDB belongs to one process"
        )
    endpoints = chain_endpoints(args, settings)
    runtime = Runtime(
        settings, endpoints, bus=bus, head_feed=NatsBus(nats_config(settings, "flow").head_feed())
    )
    bus.status = runtime.status
    servers: list[ClickHouseHttpServer | FlowHealthServer] = []
    try:
        if args.store_http_port is not None:
            host = args.store_http_host
            if not settings.store_http_password and host not in LOOPBACK:
                log.warning(
                    "store_http.loopback_only",
                    asked=host,
                    reason="no DEFIMON_STORE_HTTP_PASSWORD set for the writer user",
                )
                host = "127.0.0.1"
            engine = ChdbHttpEngine(settings.data_dir.resolve() / "chdb")
            users = store_users(
                settings.store_http_user,
                settings.store_http_password,
                settings.store_http_analyst_user,
                settings.store_http_analyst_password,
                SqlLimits.from_settings(settings).clickhouse_settings(),
            )
            servers.append(
                ClickHouseHttpServer((host, args.store_http_port), engine, users).start()
            )
        if args.health_port is not None:
            servers.append(
                FlowHealthServer(
                    (args.health_host, args.health_port), runtime.status, runtime.flow_alive
                ).start()
            )
        bus.start_publisher()
        runtime.start_flow(
            workers_per_process=args.workers, process_id=args.process_id, addresses=addresses
        )
        log.info(
            "flow.start",
            chains=[e.config.chain_id for e in endpoints],
            nats=settings.nats_url,
            store=runtime.store.backend,
            store_http_port=args.store_http_port,
            workers=args.workers,
        )
        while runtime.flow_alive():  # until the flow ends, or SIGTERM / Ctrl-C
            threading.Event().wait(0.5)
        return 1 if runtime.status.error else 0
    finally:
        runtime.stop()  # the flow's sinks flush, then the bus sends what it holds
        for server in servers:
            server.stop()


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """The API alone: events from NATS, the store over HTTP (a ClickHouse server, or a flow
    process's embedded store via `defimon flow --store-http-port`). No flow runs here, so
    neither Bytewax nor the flow is imported. With `--processes N`, N of them on one port."""
    count = args.processes
    if count < 1:
        raise ConfigError(f"--processes {count}: at least 1")
    if count > 1 and not settings.nats_url:
        raise ConfigError(
            f"--processes {count} needs NATS (DEFIMON_NATS_URL or --nats-url): with the "
            "in-process bus, events would reach one process and never the others' clients"
        )
    nats_config(settings, "api")
    if not settings.clickhouse_url:
        raise ConfigError(
            "defimon api reads the store over HTTP: set DEFIMON_CLICKHOUSE_URL or --clickhouse-url "
            "(a ClickHouse server, or a `defimon flow --store-http-port` process)"
        )
    chain_endpoints(args, settings)  # a bad chain argument fails here, not in N processes
    if count > 1:
        from defimon.api_processes import launch

        host = bind_host(settings.host, KeyFile(settings.keys_path).configured)
        return launch(args, settings, host, count)
    api_process(args, settings)
    return 0


def api_process(
    args: argparse.Namespace,
    settings: Settings,
    *,
    index: int = 0,
    count: int = 1,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """One API process; `index` of `count` behind one port (process 0 evaluates alerts)."""
    from defimon.instance import Instance
    from defimon.nats_bus import NatsBus

    bus = NatsBus(nats_config(settings, "api"))
    instance = Instance(
        settings,
        chain_endpoints(args, settings),
        bus=bus,
        head_feed=NatsBus(nats_config(settings, "api").head_feed()),
        peers=bus if count > 1 else None,
        evaluates_alerts=index == 0,
    )
    bus.status = instance.status  # mirrors the flow process's progress
    log.info(
        "api.start",
        nats=settings.nats_url,
        store=(settings.clickhouse_url or "").split("@")[-1],
        url=f"http://{settings.host}:{settings.port}/",
        process=index,
        processes=count,
        pid=os.getpid(),
    )
    _serve(instance, start=on_ready, reuse_port=count > 1)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from defimon.runtime import Runtime
    from devnet.anvil import Anvil
    from devnet.deploy import deploy
    from devnet.main import DevnetSimulator
    from flows.endpoint import ChainEndpoint

    layout = _devnet_layout(args)
    # The devnet is a new chain every time, so last run's data describes a chain that is gone.
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    anvil = Anvil().start()
    stop = threading.Event()
    try:
        deployment = deploy(anvil.rpc_url, layout=layout)
        # One thread drives both markets: anvil's unlocked accounts race on nonces otherwise.
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=args.seed)
        for _ in range(args.warmup):
            simulator.step()
        thread = threading.Thread(
            target=simulator.run,
            args=(stop,),
            kwargs={"interval": args.interval},
            name="simulator",
            daemon=True,
        )
        thread.start()
        config = deployment.to_chain_config()
        endpoint = ChainEndpoint(config, anvil.rpc_url, anvil.ws_url)
        wallets = tuple(simulator.wallets())
        runtime = Runtime(
            settings, [endpoint], suggested_wallets=wallets or tuple(deployment.wallets)
        )
        url = f"http://{settings.host}:{settings.port}/"
        banner = [
            "",
            f"  defimon {__version__} demo",
            f"  page:    {url}",
            f"  chain:   anvil {anvil.rpc_url} (chain id {config.chain_id})",
            "  wallets with LP positions and lending accounts (type one into the page):",
            *[f"    {w}" for w in wallets[:8]],
            "  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(banner), flush=True)
        _serve(runtime, start=runtime.start_flow)
    finally:
        stop.set()
        anvil.stop()
    return 0


def cmd_devnet(args: argparse.Namespace, settings: Settings) -> int:
    from devnet.main import run_devnet

    run_devnet(
        args.port,
        Path(args.write_config) if args.write_config else None,
        seed=args.seed,
        interval=args.interval,
        layout=_devnet_layout(args),
    )
    return 0


def _add_layout_argument(parser: argparse.ArgumentParser) -> None:
    # no `choices` from devnet.oracles: importing devnet at parse time slows every command
    parser.add_argument(
        "--layout",
        default=None,
        help="what prices the devnet's Aave reserves: mainnet (the default: WETH behind a "
        "Chainlink EACAggregatorProxy whose aggregator is swapped mid-scenario, wstETH behind "
        "a CAPO-shaped adapter that emits no prices) or feeds (a PriceFeed each, emitting its "
        "own AnswerUpdated, shaped like 2022)",
    )


def _devnet_layout(args: argparse.Namespace) -> str:
    from devnet.oracles import DEFAULT_LAYOUT, LAYOUTS

    if args.layout is None:
        # What a user sees is shaped like the chains their money is on (and what the test
        # suite's fixtures use).
        return DEFAULT_LAYOUT
    if args.layout not in LAYOUTS:
        raise ConfigError(f"--layout {args.layout!r}: expected one of {', '.join(LAYOUTS)}")
    return str(args.layout)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    keys = KeyFile(settings.keys_path)
    if args.action == "create":
        scopes = parse_scopes(args.scopes)
        token = keys.create(args.name, scopes, args.rate_per_minute)
        key = keys.find(token)
        assert key is not None
        print(token)
        print(
            f"key {key.id} ({', '.join(scopes)}, {key.rate_per_minute}/min) stored hashed in "
            f"{settings.keys_path}; this is the only time it is shown",
            file=sys.stderr,
        )
    elif args.action == "list":
        for k in keys.all():
            joined = ",".join(k.scopes)
            print(f"{k.id}  {k.name or '-':20}  {joined:18}  {k.rate_per_minute}/min  {k.created}")
    else:
        if not keys.revoke(args.id):
            print(f"no key {args.id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from defimon import sql_cli

    return sql_cli.main(settings, args.sql, args.format, args.api)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defimon", description=__doc__)
    parser.add_argument("--version", action="version", version=f"defimon {__version__}")
    parser.add_argument("--log-level", default=None, help="debug, info, warning (default info)")
    parser.add_argument("--log-format", choices=["console", "json"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="devnet + simulator + flow + API + page, in one go")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--data-dir",
        default=".defimon-demo",
        help="wiped at start: the devnet is a new chain every run",
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--interval", type=float, default=1.0, help="seconds between market rounds")
    demo.add_argument("--warmup", type=int, default=10, help="market rounds before serving")
    _add_layout_argument(demo)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser(
        "run",
        help="watch one or more chains: flow + API in one process",
        description="Follow chains (`defimon chains` lists the built-ins) and serve the API. "
        "Built-ins default to free public RPC endpoints, which are rate limited: pass your own.",
    )
    add_chain_args(run)
    run.add_argument(
        "--watch",
        action="append",
        metavar="ADDR",
        default=None,
        help="wallet watch mode (repeatable): show these wallets from the head on, read with "
        "eth_call, instead of indexing the full protocols from start_block",
    )
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    run.set_defaults(func=cmd_run)

    chains = sub.add_parser("chains", help="list the built-in chains and their protocols")
    chains.set_defaults(func=cmd_chains)

    flow = sub.add_parser(
        "flow",
        help="scale-out: the dataflow and store writes, publishing to NATS (no API)",
        description="Publishes events to the NATS JetStream stream at DEFIMON_NATS_URL; writes "
        "the store (chDB in --data-dir, or the ClickHouse server at DEFIMON_CLICKHOUSE_URL).",
    )
    add_chain_args(flow)
    flow.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    flow.add_argument("--nats-url", default=None, help="default: $DEFIMON_NATS_URL")
    flow.add_argument("--clickhouse-url", default=None, help="default: $DEFIMON_CLICKHOUSE_URL")
    flow.add_argument("--workers", type=int, default=1, help="Bytewax workers in this process")
    flow.add_argument(
        "--process-id", type=int, default=None, help="this process's index in --addresses"
    )
    flow.add_argument(
        "--addresses",
        default=None,
        help='every Bytewax process, "host1:port;host2:port" (needs a ClickHouse server)',
    )
    flow.add_argument(
        "--store-http-port",
        type=int,
        default=None,
        help="serve the embedded chDB store over ClickHouse's HTTP interface on this port",
    )
    flow.add_argument("--store-http-host", default="127.0.0.1")
    flow.add_argument("--health-port", type=int, default=None, help="serve /healthz and /metrics")
    flow.add_argument("--health-host", default="127.0.0.1")
    flow.set_defaults(func=cmd_flow)

    api = sub.add_parser(
        "api",
        help="scale-out: the API alone, events from NATS, the store over HTTP",
        description="Reads events from DEFIMON_NATS_URL and the store at DEFIMON_CLICKHOUSE_URL "
        "(a ClickHouse server, or `defimon flow --store-http-port`). Any number may run.",
    )
    add_chain_args(api)
    api.add_argument("--port", type=int, default=None, help="default: $DEFIMON_PORT or 8000")
    api.add_argument("--host", default=None, help="default: $DEFIMON_HOST or 127.0.0.1")
    api.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    api.add_argument("--nats-url", default=None, help="default: $DEFIMON_NATS_URL")
    api.add_argument("--clickhouse-url", default=None, help="default: $DEFIMON_CLICKHOUSE_URL")
    api.add_argument(
        "--clickhouse-analyst-url",
        default=None,
        help="a read-only ClickHouse user for analyst SQL "
        "(default: $DEFIMON_CLICKHOUSE_ANALYST_URL)",
    )
    api.add_argument(
        "--processes",
        type=int,
        default=1,
        help="API processes sharing the port (SO_REUSEPORT), each following NATS; "
        "process 0 evaluates the alert rules (default 1)",
    )
    api.set_defaults(func=cmd_api)

    devnet = sub.add_parser("devnet", help="anvil + real Uniswap V3 + market simulator")
    devnet.add_argument("--port", type=int, default=None, help="default: a free port")
    devnet.add_argument("--write-config", default=None, help="write the chain config TOML here")
    devnet.add_argument("--seed", type=int, default=7)
    devnet.add_argument("--interval", type=float, default=0.5)
    _add_layout_argument(devnet)
    devnet.set_defaults(func=cmd_devnet)

    keys = sub.add_parser(
        "keys",
        help="API keys: create (printed once, stored hashed), list, revoke",
        description="With no key, the API listens on loopback only. Keys go to "
        "<data dir>/api_keys.json (or $DEFIMON_API_KEYS_FILE); a running server picks up changes.",
    )
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument("--scopes", default="read", help="comma-separated: read, sql, alerts")
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument("--rate-per-minute", type=int, default=600, help="requests a minute")
    listing = keys_sub.add_parser("list", help="the keys (ids, scopes, limits; never the keys)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    for p in (create, listing, revoke):
        p.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    keys.set_defaults(func=cmd_keys)

    sql = sub.add_parser(
        "sql",
        help="run one read-only SQL statement on the store and print the result",
        description="Opens the store directly; if a running defimon holds it (chDB allows one "
        "process per data directory), asks that process's API instead.",
    )
    sql.add_argument("sql", help='e.g. "SELECT count() FROM defimon.position_versions FINAL"')
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json", "arrow", "parquet"],
        default="table",
        help="table (default) prints aligned text; arrow and parquet write bytes to stdout",
    )
    sql.add_argument(
        "--api",
        default=None,
        help="ask this running defimon (e.g. http://127.0.0.1:8000) instead of opening the store",
    )
    sql.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    sql.add_argument("--port", type=int, default=None, help="the API's port if the store is busy")
    sql.add_argument("--host", default=None, help="the API's host if the store is busy")
    sql.set_defaults(func=cmd_sql)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM before or after serving ends the process like Ctrl-C does: through the `finally`
    # blocks, so the devnet and the store close. While serving, _serve handles it instead.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    for name in (
        "port",
        "host",
        "data_dir",
        "log_level",
        "log_format",
        "nats_url",
        "clickhouse_url",
        "clickhouse_analyst_url",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure(settings.log_level, settings.log_format)
    try:
        code: int = args.func(args, settings)
        return code
    except KeyboardInterrupt:
        return 130
    except DefimonError as exc:
        print(f"defimon: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

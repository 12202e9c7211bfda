"""The `defimon` command: demo, run, devnet, sql."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from defimon import __version__
from defimon.keys import KeyFile, parse_scopes
from defimon.logs import configure
from defimon.settings import Settings
from schemas.chain_config import ChainConfig
from schemas.errors import DefimonError

if TYPE_CHECKING:  # the heavy modules load only for the command that needs them
    from defimon.runtime import Runtime

log = structlog.get_logger("defimon.cli")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve(runtime: Runtime) -> None:
    import uvicorn

    from api.app import create_app

    app = create_app(runtime)
    host = bind_host(runtime.settings.host, KeyFile(runtime.settings.keys_path).configured)
    config = uvicorn.Config(
        app,
        host=host,
        port=runtime.settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    stopped_by: list[int] = []

    def graceful_stop_done(signum: int, frame: object) -> None:
        # uvicorn handles SIGINT/SIGTERM while it serves: it stops accepting requests, runs the
        # lifespan shutdown (Runtime.stop: the flow ends and its sinks flush) and then re-raises
        # the signal, which lands here. Everything processed is stored by then, so the process
        # exits normally (code 0) instead of dying of the signal. A signal in the instant before
        # uvicorn takes over asks the server to exit at once.
        stopped_by.append(signum)
        server.should_exit = True

    previous = {s: signal.signal(s, graceful_stop_done) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
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


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from defimon.runtime import Runtime
    from flows.source import ChainEndpoint

    config = ChainConfig.load(args.chain_config)
    endpoint = ChainEndpoint(config, args.rpc, args.ws, args.from_block)
    runtime = Runtime(settings, [endpoint])
    log.info(
        "run.start",
        chain_id=config.chain_id,
        rpc=args.rpc,
        ws=args.ws,
        url=f"http://{settings.host}:{settings.port}/",
    )
    _serve(runtime)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from defimon.runtime import Runtime
    from devnet.anvil import Anvil
    from devnet.deploy import deploy
    from devnet.main import DevnetSimulator
    from flows.source import ChainEndpoint

    # The devnet is a new chain every time, so last run's data describes a chain that is gone.
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    anvil = Anvil().start()
    stop = threading.Event()
    try:
        deployment = deploy(anvil.rpc_url)
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
            "  wallets with Uniswap positions and Aave accounts (type one into the page):",
            *[f"    {w}" for w in wallets[:8]],
            "  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(banner), flush=True)
        _serve(runtime)
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
    )
    return 0


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
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="watch a chain: flow + API in one process")
    run.add_argument("--rpc", required=True, help="HTTP JSON-RPC URL")
    run.add_argument("--ws", default=None, help="WebSocket URL for newHeads (else polling)")
    run.add_argument("--chain-config", required=True, help="TOML chain config")
    run.add_argument(
        "--from-block",
        type=int,
        default=None,
        help="start a fresh backfill here (default: the config's start_block)",
    )
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data-dir", default=None, help="default: $DEFIMON_DATA_DIR or .defimon")
    run.set_defaults(func=cmd_run)

    devnet = sub.add_parser("devnet", help="anvil + real Uniswap V3 + market simulator")
    devnet.add_argument("--port", type=int, default=None, help="default: a free port")
    devnet.add_argument("--write-config", default=None, help="write the chain config TOML here")
    devnet.add_argument("--seed", type=int, default=7)
    devnet.add_argument("--interval", type=float, default=0.5)
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
    for name in ("port", "host", "data_dir", "log_level", "log_format"):
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

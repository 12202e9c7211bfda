"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked without
one: it parses, its defimon commands parse with defimon's own CLI, its DEFIMON_* variables are
settings, the services wait for healthy dependencies, and the ClickHouse users file gives the
analyst a read-only profile."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from defimon.cli import build_parser
from ports.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# ${NAME}, ${NAME:-default}, ${NAME:?error}: what `docker compose config` substitutes.
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::[-?]([^}]*))?\}")


def substituted(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if match.group(0).startswith("${" + name + ":-"):
            return default or ""
        return {"DEFIMON_FLOW_WORKERS": "1", "DEFIMON_API_PORT": "8000"}.get(name, f"x-{name}")

    return VARIABLE.sub(value, text)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(substituted((ROOT / "docker-compose.yml").read_text()))
    return loaded


def test_the_services_and_their_order() -> None:
    services = compose()["services"]
    assert set(services) == {"clickhouse", "nats", "flow", "api"}
    for name in services:
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    for name in ("flow", "api"):
        needs = services[name]["depends_on"]
        assert needs["clickhouse"]["condition"] == "service_healthy"
        assert needs["nats"]["condition"] == "service_healthy"
    assert "-js" in services["nats"]["command"] and "/data" in services["nats"]["command"]
    assert "8222" in services["nats"]["healthcheck"]["test"][1]
    assert "8123/ping" in services["clickhouse"]["healthcheck"]["test"][1]
    assert services["api"]["ports"] == ["8000:8000"]
    users = "./deploy/clickhouse/users.d/defimon.xml:/etc/clickhouse-server/users.d/defimon.xml:ro"
    assert users in services["clickhouse"]["volumes"]


def test_the_commands_are_defimon_commands_with_its_flags() -> None:
    services = compose()["services"]
    parser = build_parser()
    flow = parser.parse_args([str(a) for a in services["flow"]["command"]])
    assert flow.command == "flow" and flow.health_port == 9100 and flow.workers == 1
    assert flow.chain == ["/config/chain.toml"]
    api = parser.parse_args([str(a) for a in services["api"]["command"]])
    assert (api.command, api.host, api.port) == ("api", "0.0.0.0", 8000)
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "9100/healthz" in " ".join(services["flow"]["healthcheck"]["test"])


def test_the_environment_names_are_settings() -> None:
    services = compose()["services"]
    fields = set(Settings.model_fields)
    for name in ("flow", "api"):
        env = services[name]["environment"]
        for key in env:
            assert key.startswith("DEFIMON_") and key[8:].lower() in fields, key
        assert env["DEFIMON_NATS_URL"] == "nats://nats:4222"
        assert env["DEFIMON_CLICKHOUSE_URL"].endswith("@clickhouse:8123")
    assert services["api"]["environment"]["DEFIMON_CLICKHOUSE_ANALYST_URL"].startswith(
        "http://analyst:"
    )


def test_the_analyst_is_read_only_with_capped_limits() -> None:
    root = ET.parse(ROOT / "deploy/clickhouse/users.d/defimon.xml").getroot()
    analyst = root.find("users/analyst")
    assert analyst is not None and analyst.findtext("profile") == "defimon_analyst"
    grants = [q.text for q in analyst.findall("grants/query")]
    assert grants == ["GRANT SELECT ON defimon.*"]
    profile = root.find("profiles/defimon_analyst")
    assert profile is not None and profile.findtext("readonly") == "2"
    assert profile.find("constraints/readonly/const") is not None
    defaults = Settings()
    caps = {
        "max_execution_time": defaults.sql_max_execution_seconds,
        "max_result_rows": defaults.sql_max_result_rows,
        "max_result_bytes": defaults.sql_max_result_bytes,
        "max_rows_to_read": defaults.sql_max_rows_to_read,
        "max_bytes_to_read": defaults.sql_max_bytes_to_read,
        "max_memory_usage": defaults.sql_max_memory_bytes,
    }
    for name, value in caps.items():
        # defimon sends its limits with every analyst query: they must fit under the caps.
        cap = profile.findtext(f"constraints/{name}/max")
        assert cap is not None and float(cap) >= value, name
    writer = root.find("users/defimon")
    assert writer is not None and writer.find("password").get("from_env") == "DEFIMON_CH_PASSWORD"  # type: ignore[union-attr]

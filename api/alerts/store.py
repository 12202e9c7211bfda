"""Alert rules, fired alerts, the delivery log and rule states in ClickHouse (sql/007_alerts.sql).

Synchronous, on a store handle of its own; the engine calls it through a thread. A lock
serialises the handle, which the engine, the deliverer and the routes share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from api.alerts.rules import Delivery, Fired, Rule, SubjectState
from ports.store import Store
from protocols.registry import PROTOCOLS
from schemas.filters import Filter

RULE_COLUMNS = (
    "rule_id",
    "name",
    "kind",
    "filter",
    "params",
    "delivery",
    "enabled",
    "created_at",
    "version",
    "is_deleted",
)
ALERT_COLUMNS = (
    "alert_id",
    "rule_id",
    "kind",
    "chain_id",
    "subject_id",
    "owner",
    "block_number",
    "block_hash",
    "block_time",
    "value",
    "threshold",
    "message",
    "data",
    "fired_at",
    "version",
)
DELIVERY_COLUMNS = (
    "alert_id",
    "rule_id",
    "channel",
    "target",
    "attempt",
    "status",
    "code",
    "error",
    "at",
    "version",
)
STATE_COLUMNS = ("rule_id", "subject_id", "armed", "last_fired", "version")
TERMINAL = ("delivered", "rejected", "expired")


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)]


def _finite(x: float) -> float:
    # An infinite health factor (no debt) is stored as the largest float.
    return max(min(x, 1.7976931348623157e308), -1.7976931348623157e308)


class AlertStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # Rules -----------------------------------------------------------------------------------

    def save_rule(self, rule: Rule, *, deleted: bool = False) -> None:
        d = rule.delivery
        row = (
            rule.id,
            rule.name,
            rule.kind,
            orjson.dumps(rule.filter.query()).decode(),
            orjson.dumps(rule.params()).decode(),
            orjson.dumps(
                {
                    "webhook_url": d.webhook_url,
                    "webhook_secret": d.webhook_secret,
                    "email": d.email,
                    "stream": d.stream,
                }
            ).decode(),
            int(rule.enabled),
            datetime.fromtimestamp(rule.created_at, UTC),
            time.time_ns(),
            int(deleted),
        )
        with self._lock:
            self.store.insert("defimon.alert_rules", RULE_COLUMNS, _columns([row]))

    def rules(self) -> list[Rule]:
        with self._lock:
            rows = self.store.dicts(
                "SELECT rule_id, name, kind, filter, params, delivery, enabled, "
                "toUnixTimestamp(created_at) AS created FROM defimon.alert_rules FINAL "
                "ORDER BY created_at, rule_id"
            )
        return [_rule(r) for r in rows]

    # Alerts ----------------------------------------------------------------------------------

    def save_alerts(self, fired: Sequence[Fired]) -> None:
        now = datetime.now(UTC)
        rows = []
        for f in fired:
            s = f.sample
            rows.append(
                (
                    f.id,
                    f.rule_id,
                    f.kind,
                    s.chain_id,
                    s.subject_id,
                    str(s.data.get("owner") or ""),
                    s.block_number,
                    s.block_hash,
                    datetime.fromtimestamp(s.block_time, UTC),
                    _finite(f.value),
                    _finite(f.threshold),
                    f.message,
                    orjson.dumps(f.json()).decode(),
                    now,
                    time.time_ns(),
                )
            )
        if rows:
            with self._lock:
                self.store.insert("defimon.alerts", ALERT_COLUMNS, _columns(rows))

    def alerts(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        where = "WHERE rule_id = {rule:String}" if rule_id is not None else ""
        with self._lock:
            rows = self.store.rows(
                f"SELECT data FROM defimon.alerts FINAL {where} "
                "ORDER BY block_time DESC, block_number DESC, alert_id LIMIT {limit:UInt32}",
                {"rule": rule_id or "", "limit": limit},
            )
        return [orjson.loads(r[0]) for r in rows]

    def alert_payloads(self, since: datetime) -> list[tuple[dict[str, Any], datetime]]:
        """Alerts fired since `since` (wall clock), oldest first, with when they fired: to
        resume their deliveries."""
        with self._lock:
            rows = self.store.rows(
                "SELECT data, fired_at FROM defimon.alerts FINAL "
                "WHERE fired_at >= {since:DateTime64(3, 'UTC')} "
                "ORDER BY fired_at, block_number, alert_id",
                {"since": since},
            )
        return [(orjson.loads(r[0]), r[1]) for r in rows]

    # Deliveries ------------------------------------------------------------------------------

    def log_delivery(
        self,
        alert_id: str,
        rule_id: str,
        channel: str,
        target: str,
        attempt: int,
        status: str,
        code: int,
        error: str,
    ) -> None:
        row = (
            alert_id,
            rule_id,
            channel,
            target,
            attempt,
            status,
            code,
            error[:2000],
            datetime.now(UTC),
            time.time_ns(),
        )
        with self._lock:
            self.store.insert("defimon.alert_deliveries", DELIVERY_COLUMNS, _columns([row]))

    def deliveries(self, alert_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        if not alert_ids:
            return {}
        with self._lock:
            rows = self.store.dicts(
                "SELECT alert_id, channel, target, attempt, status, code, error, at "
                "FROM defimon.alert_deliveries FINAL WHERE alert_id IN {ids:Array(String)} "
                "ORDER BY alert_id, at, channel, attempt",
                {"ids": list(alert_ids)},
            )
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            r["at"] = r["at"].astimezone(UTC).isoformat().replace("+00:00", "Z")
            out.setdefault(r.pop("alert_id"), []).append(r)
        return out

    def delivery_progress(
        self, alert_ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[int, bool]]:
        """(alert, channel) -> (attempts so far, finished)."""
        out: dict[tuple[str, str], tuple[int, bool]] = {}
        for aid, rows in self.deliveries(alert_ids).items():
            for r in rows:
                attempts, done = out.get((aid, r["channel"]), (0, False))
                out[(aid, r["channel"])] = (
                    max(attempts, int(r["attempt"])),
                    done or r["status"] in TERMINAL,
                )
        return out

    # States ----------------------------------------------------------------------------------

    def save_states(self, states: Iterable[tuple[str, str, SubjectState]]) -> None:
        version = time.time_ns()
        rows = [
            (rule_id, subject_id, int(s.armed), s.last_fired, version)
            for rule_id, subject_id, s in states
        ]
        if rows:
            with self._lock:
                self.store.insert("defimon.alert_states", STATE_COLUMNS, _columns(rows))

    def states(self) -> dict[str, dict[str, SubjectState]]:
        with self._lock:
            rows = self.store.rows(
                "SELECT rule_id, subject_id, armed, last_fired FROM defimon.alert_states FINAL"
            )
        out: dict[str, dict[str, SubjectState]] = {}
        for rule_id, subject_id, armed, last_fired in rows:
            out.setdefault(rule_id, {})[subject_id] = SubjectState(
                bool(armed), None if last_fired is None else int(last_fired)
            )
        return out


def _rule(row: dict[str, Any]) -> Rule:
    params = orjson.loads(row["params"])
    delivery = orjson.loads(row["delivery"])
    flt = orjson.loads(row["filter"])
    return Rule(
        id=row["rule_id"],
        name=row["name"],
        kind=row["kind"],
        filter=Filter.parse(flt, PROTOCOLS),
        threshold=float(params["threshold"]),
        hysteresis=float(params["hysteresis"]),
        cooldown_seconds=int(params["cooldown_seconds"]),
        window_seconds=int(params["window_seconds"]),
        measure=str(params["measure"]),
        target_weights=tuple(sorted((t, float(w)) for t, w in params["target_weights"].items())),
        # rules stored before out_of_range took a duration have none
        duration_seconds=int(params.get("duration_seconds", 0)),
        delivery=Delivery(
            delivery.get("webhook_url"),
            delivery.get("webhook_secret"),
            delivery.get("email"),
            bool(delivery.get("stream", True)),
        ),
        enabled=bool(row["enabled"]),
        created_at=int(row["created"]),
    )

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.alerts.backtest import backtest as run_backtest
from api.alerts.engine import AlertEngine
from api.alerts.rules import Delivery, Rule, validate
from api.deps import (
    AUTH_ERRORS,
    ChainsDep,
    QueriesDep,
    SettingsDep,
    chain_for,
    parse_at,
    require,
)
from protocols.registry import PROTOCOLS
from schemas.alerts import (
    AlertsOut,
    BacktestOut,
    RuleIn,
    RuleOut,
    RuleScopeOut,
    RulesOut,
)
from schemas.api import ErrorOut
from schemas.errors import InvalidInput, NotFound
from schemas.filters import Filter

router = APIRouter(
    prefix="/v1/alerts",
    tags=["alerts"],
    dependencies=[Depends(require("alerts"))],
    responses=AUTH_ERRORS,
)
BAD: dict[int | str, dict[str, Any]] = {400: {"model": ErrorOut, "description": "Malformed input"}}
MISSING: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such rule"}}


def get_engine(request: Request) -> AlertEngine:
    engine: AlertEngine = request.app.state.alerts
    return engine


EngineDep = Annotated[AlertEngine, Depends(get_engine)]
RuleId = Annotated[str, Path(description="The rule's id", max_length=64)]


def parse_filter(raw: dict[str, str | list[str]] | str) -> Filter:
    if isinstance(raw, str):
        text = raw.lstrip("?")
        if "\n" in text:
            raise InvalidInput("filter is one query string")
        params: dict[str, list[str]] = parse_qs(text, keep_blank_values=False)
    else:
        params = {k: [v] if isinstance(v, str) else list(v) for k, v in raw.items()}
    return Filter.parse(params, PROTOCOLS)


def rule_out(rule: Rule) -> dict[str, Any]:
    d = rule.delivery
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        "filter": rule.filter.query(),
        **rule.params(),
        "delivery": {
            "webhook_url": d.webhook_url,
            "has_webhook_secret": bool(d.webhook_secret),
            "email": d.email,
            "stream": d.stream,
        },
        "enabled": rule.enabled,
        "created_at": datetime.fromtimestamp(rule.created_at, UTC)
        .isoformat()
        .replace("+00:00", "Z"),
    }


def find(engine: AlertEngine, rule_id: str) -> Rule:
    rule = engine.rules.get(rule_id)
    if rule is None:
        raise NotFound(f"no alert rule {rule_id!r}")
    return rule


@router.post("/rules", response_model=RuleOut, status_code=201, responses=BAD)
async def create_rule(body: RuleIn, engine: EngineDep) -> dict[str, Any]:
    """Create a rule. Its subjects are chosen with the filter grammar of /v1/positions, so it
    evaluates exactly the positions and accounts that endpoint lists for the same filter. It
    starts armed: a subject already past the level fires at once."""
    d = body.delivery
    rule = validate(
        Rule(
            id=uuid.uuid4().hex,
            name=body.name,
            kind=body.kind,
            filter=parse_filter(body.filter),
            threshold=body.threshold,
            hysteresis=body.hysteresis,
            cooldown_seconds=body.cooldown_seconds,
            window_seconds=body.window_seconds,
            measure=body.measure,
            target_weights=tuple(sorted(body.target_weights.items())),
            duration_seconds=body.duration_seconds,
            delivery=Delivery(d.webhook_url, d.webhook_secret, d.email, d.stream),
            enabled=body.enabled,
            created_at=int(datetime.now(UTC).timestamp()),
        )
    )
    await engine.add_rule(rule)
    return rule_out(rule)


@router.get("/rules", response_model=RulesOut)
async def list_rules(engine: EngineDep) -> dict[str, Any]:
    """Every rule (webhook secrets are never returned)."""
    rules = sorted(engine.rules.values(), key=lambda r: (r.created_at, r.id))
    return {"rules": [rule_out(r) for r in rules]}


@router.delete("/rules/{rule_id}", status_code=204, responses=MISSING)
async def delete_rule(rule_id: RuleId, engine: EngineDep) -> Response:
    """Delete a rule: it stops firing; alerts it fired and their deliveries stay."""
    await engine.delete_rule(find(engine, rule_id))
    return Response(status_code=204)


@router.get("/rules/{rule_id}/subjects", response_model=RuleScopeOut, responses=MISSING)
async def rule_subjects(rule_id: RuleId, engine: EngineDep) -> dict[str, Any]:
    """The positions and accounts the live engine evaluates for this rule now."""
    rule = find(engine, rule_id)
    return {"rule_id": rule.id, "subjects": [s["id"] for s in engine.scope(rule)]}


@router.get("", response_model=AlertsOut, responses=BAD)
def list_alerts(
    request: Request,
    rule_id: Annotated[str | None, Query(max_length=64, description="Only this rule's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    deliveries: Annotated[bool, Query(description="Include each alert's delivery log")] = True,
) -> dict[str, Any]:
    """Fired alerts, newest block first."""
    engine = get_engine(request)
    alerts = engine.store.alerts(rule_id, limit)
    if deliveries:
        log = engine.store.deliveries([a["id"] for a in alerts])
        for a in alerts:
            a["deliveries"] = log.get(a["id"], [])
    return {"alerts": alerts}


@router.post(
    "/rules/{rule_id}/backtest",
    response_model=BacktestOut,
    responses={**BAD, 404: {"model": ErrorOut, "description": "No such rule or block"}},
)
def backtest(
    rule_id: RuleId,
    request: Request,
    chains: ChainsDep,
    settings: SettingsDep,
    queries: QueriesDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=64,
            description="ISO-8601 time or block number; default: the first indexed block",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=64, description="ISO-8601 time or block number; default: the head"),
    ] = None,
    chain_id: Annotated[
        int | None, Query(ge=1, description="Needed only when several chains are indexed")
    ] = None,
) -> dict[str, Any]:
    """Replay the rule over history, from the store, with the live evaluator: where it would
    have fired (subject, block, time, value). Starts armed at `from`."""
    rule = find(get_engine(request), rule_id)
    if chain_id is None and len(rule.filter.chain_id) == 1:
        chain_id = next(iter(rule.filter.chain_id))
    chain = chain_for(chains, chain_id)
    head = chains.processed(chain)
    start_at = parse_at(from_)
    if start_at is None:
        indexed = queries.indexed_range(chain)
        if indexed is None:
            raise NotFound(f"chain {chain} has no indexed blocks yet")
        start_at = indexed[0]
    start = queries.resolve_at(chain, start_at, head)
    end = queries.resolve_at(chain, parse_at(to), head)
    if start.number > end.number:
        raise InvalidInput("from is after to")
    return run_backtest(queries, rule, start, end, settings.alert_backtest_max_blocks)

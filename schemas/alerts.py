"""Request and response models of the alerts API (they document /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import AsOfOut

Kind = Literal[
    "health_factor_below",
    "il_above",
    "out_of_range",
    "value_change",
    "liquidation",
    "allocation_drift",
]


class DeliveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(
        None, max_length=2000, description="POSTed the alert as JSON, signed with the secret"
    )
    webhook_secret: str | None = Field(
        None,
        min_length=8,
        max_length=500,
        description="HMAC-SHA256 key: the X-Defimon-Signature header is "
        "`sha256=<hex hmac of the raw body>`",
    )
    email: str | None = Field(None, max_length=320, description="Sent by SMTP")
    stream: bool = Field(True, description="Publish `alert` events on /v1/stream")


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Kind = Field(
        description="health_factor_below: a lending account's health factor falls below "
        "`threshold`. il_above: an LP position's impermanent loss exceeds `threshold` "
        "(`measure` pct: il_pct as a fraction; usd: il_usd). out_of_range: an LP position "
        "leaves its range (with `duration_seconds`: has been out of it that long). "
        "value_change: value_usd moved more than `threshold` (a fraction) "
        "against its value `window_seconds` ago. liquidation: an account was liquidated. "
        "allocation_drift: a wallet's weights by token (LP amounts, supplied minus borrowed) "
        "deviate from `target_weights` by more than `threshold` (a fraction) for some token."
    )
    filter: dict[str, str | list[str]] | str = Field(
        default_factory=dict,
        description="Which subjects: the filter grammar of /v1/positions, as a query string "
        "(`owner=0x…&max_health_factor=2`) or an object of its parameters",
    )
    threshold: float = Field(0.0, description="The level (see kind)")
    hysteresis: float = Field(
        0.0,
        ge=0,
        description="Re-arm only after crossing back past the level by this band",
    )
    cooldown_seconds: int = Field(
        0,
        ge=0,
        le=10 * 365 * 86400,
        description="No re-fire for a subject within this (block time)",
    )
    window_seconds: int = Field(0, ge=0, le=366 * 86400, description="value_change window")
    measure: Literal["pct", "usd"] = Field("pct", description="il_above: il_pct or il_usd")
    duration_seconds: int = Field(
        0,
        ge=0,
        le=366 * 86400,
        description="out_of_range: fire once the position has been out of range this long "
        "(block time; 0: as it leaves)",
    )
    target_weights: dict[str, float] = Field(
        default_factory=dict, description="allocation_drift: token address -> weight"
    )
    delivery: DeliveryIn = Field(default_factory=DeliveryIn)
    enabled: bool = True


class DeliveryOut(BaseModel):
    webhook_url: str | None
    has_webhook_secret: bool
    email: str | None
    stream: bool


class RuleOut(BaseModel):
    id: str
    name: str
    kind: str
    filter: dict[str, list[str]] = Field(description="The filter's canonical query parameters")
    threshold: float
    hysteresis: float
    cooldown_seconds: int
    window_seconds: int
    measure: str
    duration_seconds: int = 0
    target_weights: dict[str, float] = Field(description="Normalised to add up to 1")
    delivery: DeliveryOut
    enabled: bool
    created_at: str


class RulesOut(BaseModel):
    rules: list[RuleOut]


class RuleScopeOut(BaseModel):
    rule_id: str
    subjects: list[str] = Field(description="Ids of the positions and accounts it evaluates")


class DeliveryAttemptOut(BaseModel):
    channel: str
    target: str
    attempt: int
    status: str = Field(description="delivered | failed (will retry) | rejected | expired")
    code: int = Field(description="HTTP status or SMTP reply code; 0 if none")
    error: str
    at: str


class AlertOut(BaseModel):
    id: str
    rule_id: str
    rule_name: str
    kind: str
    subject_id: str = Field(description="Position or account id; chain:owner for a wallet")
    protocol: str | None
    chain_id: int
    owner: str | None
    block_number: int
    block_hash: str
    block_time: str
    value: float = Field(description="The figure that crossed the level")
    threshold: float
    message: str
    subject: dict[str, Any] | None = Field(
        None, description="The subject's state as evaluated (its wire format)"
    )
    deliveries: list[DeliveryAttemptOut] | None = Field(
        None, description="The delivery log of this alert"
    )


class AlertsOut(BaseModel):
    alerts: list[AlertOut]


class BacktestOut(BaseModel):
    rule_id: str
    from_: AsOfOut = Field(alias="from")
    to: AsOfOut
    blocks_evaluated: int
    fired: list[AlertOut] = Field(description="Where the rule would have fired, in order")

"""Group and aggregate valued subjects (pure): `/v1/aggregate`'s grammar and arithmetic.

Subjects are what the filter grammar selects (schemas.filters), valued at one block by the
flow's own functions; aggregating them here keeps the figures identical to what
`/v1/positions` lists. Dimensions and metrics come from whitelists:

- `group_by`: protocol, chain, token, pool, owner (comma-separated, up to 3). Grouping by token
  counts a subject once per token it holds (both sides of an LP pair, every reserve of an
  account): it answers "what is exposed to this token", so token groups overlap.
- `metrics`: `count`, and `sum(f)`, `avg(f)`, `min(f)`, `max(f)`, `quantile(q,f)` for f in
  value_usd, il_usd, il_pct, debt_usd, health_factor, uncollected_usd. A subject without f
  (or with an infinite health factor) does not enter f's aggregates; `count` counts all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import InvalidInput
from schemas.filters import numeric_field, tokens_of

DIMENSIONS = ("protocol", "chain", "token", "pool", "owner")
FIELDS = ("value_usd", "il_usd", "il_pct", "debt_usd", "health_factor", "uncollected_usd")
FUNCTIONS = ("sum", "avg", "min", "max")
_METRIC = re.compile(r"^(?:(sum|avg|min|max)\((\w+)\)|quantile\((0(?:\.\d+)?|1(?:\.0+)?),(\w+)\))$")


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # as asked, normalised: "count", "sum(value_usd)", "quantile(0.9,value_usd)"
    function: str  # count | sum | avg | min | max | quantile
    field: str | None = None
    q: float | None = None


def parse_group_by(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    for d in dims:
        if d not in DIMENSIONS:
            raise InvalidInput(f"cannot group by {d!r}; dimensions: {', '.join(DIMENSIONS)}")
    if len(set(dims)) != len(dims) or len(dims) > 3:
        raise InvalidInput("group_by takes up to 3 distinct dimensions")
    return dims


def parse_metrics(text: str | None) -> tuple[Metric, ...]:
    if not text:
        return (Metric("count", "count"),)
    metrics = []
    for raw in _split(text):
        item = raw.replace(" ", "")
        if item == "count":
            metrics.append(Metric("count", "count"))
            continue
        m = _METRIC.match(item)
        if m is None:
            raise InvalidInput(
                f"metric {raw!r} is not count, sum(f), avg(f), min(f), max(f) or quantile(q,f)"
            )
        if m.group(1):
            function, field, q = m.group(1), m.group(2), None
        else:
            function, field, q = "quantile", m.group(4), float(m.group(3))
        if field not in FIELDS:
            raise InvalidInput(f"cannot aggregate {field!r}; fields: {', '.join(FIELDS)}")
        name = f"{function}({field})" if q is None else f"quantile({q:g},{field})"
        metrics.append(Metric(name, function, field, q))
    if len(metrics) > 20:
        raise InvalidInput("at most 20 metrics")
    return tuple(metrics)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses: quantile(0.9,value_usd) is one metric."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += ch == "("
        depth -= ch == ")"
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _keys(subject: Mapping[str, Any], dims: tuple[str, ...]) -> list[tuple[Any, ...]]:
    choices: list[list[Any]] = []
    for d in dims:
        if d == "token":
            choices.append(sorted(set(tokens_of(subject))) or [None])
        elif d == "chain":
            choices.append([subject.get("chain_id")])
        else:
            choices.append([subject.get(d)])
    keys: list[tuple[Any, ...]] = [()]
    for options in choices:
        keys = [(*k, o) for k in keys for o in options]
    return keys


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def aggregate(
    subjects: Iterable[Mapping[str, Any]], dims: tuple[str, ...], metrics: tuple[Metric, ...]
) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for subject in subjects:
        for key in _keys(subject, dims):
            groups.setdefault(key, []).append(subject)
    out = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        members = groups[key]
        values: dict[str, Any] = {}
        for metric in metrics:
            if metric.function == "count":
                values[metric.name] = len(members)
                continue
            assert metric.field is not None
            xs = sorted(
                x
                for x in (numeric_field(s, metric.field) for s in members)
                if x is not None and math.isfinite(x)
            )
            if not xs:
                values[metric.name] = None
            elif metric.function == "sum":
                values[metric.name] = math.fsum(xs)
            elif metric.function == "avg":
                values[metric.name] = math.fsum(xs) / len(xs)
            elif metric.function == "min":
                values[metric.name] = xs[0]
            elif metric.function == "max":
                values[metric.name] = xs[-1]
            else:
                assert metric.q is not None
                values[metric.name] = quantile(xs, metric.q)
        out.append({"key": dict(zip(dims, key, strict=True)), "metrics": values})
    return out

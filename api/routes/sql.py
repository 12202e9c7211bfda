"""POST /v1/sql: read-only analyst SQL (checks and limits in ports/analyst_sql.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.deps import AUTH_ERRORS, require
from ports.analyst_runner import MEDIA_TYPES, AnalystSql
from schemas.api import ErrorOut, SqlIn, SqlResultOut

router = APIRouter(
    prefix="/v1",
    tags=["sql"],
    dependencies=[Depends(require("sql"))],
    responses=AUTH_ERRORS,
)


def get_analyst(request: Request) -> AnalystSql:
    analyst: AnalystSql = request.app.state.analyst
    return analyst


AnalystDep = Annotated[AnalystSql, Depends(get_analyst)]

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result, in the format asked for",
        "content": {
            MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
            MEDIA_TYPES["arrow"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["parquet"]: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: {
        "model": ErrorOut,
        "description": "Refused (not a read, or reaches outside the store), failed in "
        "ClickHouse (syntax, unknown table), or stopped by a limit (rows read, result size, "
        "memory)",
    },
    408: {"model": ErrorOut, "description": "Stopped by the time limit"},
    422: {"model": ErrorOut, "description": "Malformed request body"},
    503: {"model": ErrorOut, "description": "The store is unavailable"},
}


@router.post("/sql", response_model=SqlResultOut, responses=RESPONSES)
def sql(body: SqlIn, analyst: AnalystDep) -> Response:
    """Run one read-only statement on the store (`defimon.*` tables; see the README's
    "SQL for analysts"). Writes, DDL, SYSTEM, SET, SETTINGS, FORMAT, INTO OUTFILE and table
    functions that reach files, processes or the network are refused; every query runs
    read-only under limits on time, rows read, result size and memory."""
    out = analyst.run(body.sql, body.format)
    return Response(out.body, media_type=out.media_type)

# defimon: `defimon flow` and `defimon api` (docker-compose.yml runs one of each).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DEFIMON_LOG_FORMAT=json \
    DEFIMON_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY defimon defimon
COPY ports ports
COPY protocols protocols
COPY flows flows
COPY api api
COPY schemas schemas
COPY sql sql
COPY devnet devnet
COPY bench bench
# Editable: sql/ and protocols/*/tables.sql (the migrations) are read from the source tree.
RUN pip install -e . && useradd --system --uid 10001 --home /data defimon \
    && mkdir -p /data && chown defimon /data
USER defimon
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["defimon"]
CMD ["--help"]

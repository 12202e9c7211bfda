"""API keys: created once by `defimon keys create`, stored hashed, checked per route scope,
rate-limited per key.

Keys live in a JSON file (`<data dir>/api_keys.json`, or DEFIMON_API_KEYS_FILE), not in the
store: the chDB directory is locked by the running server, and `defimon keys create` must
work beside it. The server rereads the file when it changes, so a new or revoked key takes
effect without a restart; several API processes can share one file.

A key is 32 random bytes; only its SHA-256 is kept. That is enough for a high-entropy secret
(a slow password hash protects guessable secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from schemas.errors import InvalidInput

SCOPES = ("read", "sql", "alerts")
PREFIX = "dmk_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str  # public: names the key in logs and in `defimon keys list`
    name: str
    sha256: str
    scopes: tuple[str, ...]
    rate_per_minute: int
    created: str


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(sorted({s.strip() for s in text.split(",") if s.strip()}))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInput(f"scopes are a comma-separated subset of {', '.join(SCOPES)}")
    return scopes


class KeyFile:
    """The key file, reread when it changes. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._by_hash: dict[str, ApiKey] = {}

    def all(self) -> list[ApiKey]:
        with self._lock:
            self._reload()
            return sorted(self._by_hash.values(), key=lambda k: k.created)

    @property
    def configured(self) -> bool:
        """Keys are enforced once the file exists, even with every key revoked: revoking the
        last key must lock the API, not open it."""
        return self.lookup(None)[0]

    def find(self, token: str) -> ApiKey | None:
        return self.lookup(token)[1]

    def lookup(self, token: str | None) -> tuple[bool, ApiKey | None]:
        """(whether keys are enforced, the token's key): one look at the file per request."""
        with self._lock:
            self._reload()
            key = self._by_hash.get(hash_key(token)) if token else None
            return self._stamp is not None, key

    def create(self, name: str, scopes: tuple[str, ...], rate_per_minute: int) -> str:
        """Store a new key and return the token: the only time it is ever shown."""
        if rate_per_minute < 1:
            raise InvalidInput("the rate limit is at least 1 request per minute")
        token = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(4),
            name=name,
            sha256=hash_key(token),
            scopes=scopes,
            rate_per_minute=rate_per_minute,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._lock:
            self._reload()
            self._write([*self._by_hash.values(), key])
        return token

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            self._reload()
            kept = [k for k in self._by_hash.values() if k.id != key_id]
            if len(kept) == len(self._by_hash):
                return False
            self._write(kept)
            return True

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._by_hash = None, {}
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        raw = json.loads(self.path.read_text() or "[]")
        keys = [ApiKey(**{**k, "scopes": tuple(k["scopes"])}) for k in raw]
        self._by_hash = {k.sha256: k for k in keys}
        self._stamp = stamp

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # Hashes only, but still nobody else's business: owner-only, replaced atomically.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump([asdict(k) for k in keys], f, indent=1)
        os.replace(tmp, self.path)
        self._stamp = None
        self._reload()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class RateLimiter:
    """A token bucket per key: `rate_per_minute` requests a minute, bursts up to that many."""

    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: ApiKey, now: float | None = None) -> float | None:
        """None if the request may go; else the seconds until it may (Retry-After)."""
        now = time.monotonic() if now is None else now
        per_second = key.rate_per_minute / 60.0
        bucket = self.buckets.get(key.id)
        if bucket is None:
            bucket = self.buckets[key.id] = _Bucket(float(key.rate_per_minute), now)
        bucket.tokens = min(
            float(key.rate_per_minute), bucket.tokens + (now - bucket.updated) * per_second
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / per_second

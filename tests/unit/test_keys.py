"""API keys (ports.keys): stored hashed, found by token, revoked, rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from defimon.cli import bind_host
from ports.keys import KeyFile, RateLimiter, hash_key, parse_scopes
from schemas.errors import InvalidInput


def test_a_key_is_stored_hashed_and_found_by_its_token(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "api_keys.json")
    assert not keys.configured
    token = keys.create("ci", ("read", "sql"), 60)
    stored = (tmp_path / "api_keys.json").read_text()
    assert token not in stored and hash_key(token) in stored
    assert (tmp_path / "api_keys.json").stat().st_mode & 0o077 == 0, "owner-only file"
    key = keys.find(token)
    assert key is not None and key.scopes == ("read", "sql") and key.name == "ci"
    assert keys.find(token + "x") is None
    # Another process (the server) sees the new key and the revocation.
    server_view = KeyFile(tmp_path / "api_keys.json")
    assert server_view.find(token) == key
    assert keys.revoke(key.id) and not keys.revoke(key.id)
    assert server_view.find(token) is None
    assert server_view.configured, "revoking the last key locks the API, not opens it"


def test_scopes_are_a_subset_of_the_known_ones() -> None:
    assert parse_scopes("sql, read,read") == ("read", "sql")
    for bad in ("", "admin", "read,write"):
        with pytest.raises(InvalidInput, match="subset"):
            parse_scopes(bad)


def test_the_rate_limit_is_a_token_bucket_with_a_retry_after(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "k.json")
    key = keys.find(keys.create("", ("read",), 120))  # 2 a second, bursts of 120
    assert key is not None
    limiter = RateLimiter()
    assert all(limiter.take(key, now=0.0) is None for _ in range(120))
    wait = limiter.take(key, now=0.0)
    assert wait == pytest.approx(0.5)
    assert limiter.take(key, now=0.25) == pytest.approx(0.25)
    assert limiter.take(key, now=0.5) is None


def test_without_a_key_the_api_listens_on_loopback_only() -> None:
    assert bind_host("0.0.0.0", keys_configured=False) == "127.0.0.1"
    assert bind_host("127.0.0.1", keys_configured=False) == "127.0.0.1"
    assert bind_host("0.0.0.0", keys_configured=True) == "0.0.0.0"

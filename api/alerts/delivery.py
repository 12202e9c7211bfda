"""Delivery of alerts by webhook and email, with retries, in the API's event loop.

Each destination (a webhook URL, an email address) has a FIFO queue and one worker: alerts
reach it in the order they fired, and a receiver that is down holds up only its own queue.
The worker retries the alert at the head with capped exponential backoff and jitter until it
is delivered, the receiver refuses it for good (a 4xx other than 408/425/429, an SMTP 5xx), or
it is older than the maximum age. Every attempt is a row of the delivery log.

Across restarts: the queue lives in memory, but the alerts and the log are in ClickHouse, so
on start-up every alert younger than the maximum age whose channel has no final row in the log
is queued again (`resume`). An alert whose receiver answered but whose log row was not written
before a crash is sent again: delivery is at least once, and the `X-Defimon-Alert-Id` header
(and the body's `id`) let a receiver drop the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import smtplib
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import orjson
import structlog

from api.alerts.store import AlertStore
from ports.settings import Settings

log = structlog.get_logger("defimon.alerts")

RETRYABLE_HTTP = (408, 425, 429)


def signature(secret: str, body: bytes) -> str:
    """The X-Defimon-Signature header: HMAC-SHA256 of the raw body with the rule's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with
    "equal jitter" (half fixed, half random) so receivers coming back are not stampeded."""
    delay = min(cap, base * 2 ** min(attempt - 1, 32))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass(slots=True)
class Job:
    alert_id: str
    rule_id: str
    channel: str  # webhook | email
    target: str
    payload: dict[str, Any]
    secret: str | None = None
    attempts: int = 0  # made so far (also before a restart)
    created: float = field(default_factory=time.time)  # wall clock, for the maximum age


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # delivered | failed | rejected
    code: int = 0
    error: str = ""


class Deliverer:
    def __init__(self, store: AlertStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._queues: dict[tuple[str, str], deque[Job]] = {}
        self._wake: dict[tuple[str, str], asyncio.Event] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._rng = random.Random()
        self._http: httpx.AsyncClient | None = None
        self.delivered = 0

    def enqueue(self, job: Job) -> None:
        key = (job.channel, job.target)
        self._queues.setdefault(key, deque()).append(job)
        self._wake.setdefault(key, asyncio.Event()).set()
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key))

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._http is not None:
            await self._http.aclose()

    async def _work(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        s = self.settings
        while queue:
            job = queue[0]
            if time.time() - job.created > s.alert_max_age_seconds:
                await self._log(job, Outcome("expired", error="older than the maximum age"))
                queue.popleft()
                continue
            job.attempts += 1
            outcome = await self._attempt(job)
            await self._log(job, outcome)
            if outcome.status != "failed":
                queue.popleft()
                self.delivered += outcome.status == "delivered"
                continue
            delay = backoff(
                job.attempts, s.alert_retry_base_seconds, s.alert_retry_cap_seconds, self._rng
            )
            log.info("alert.retry", channel=job.channel, target=job.target, seconds=delay)
            await asyncio.sleep(delay)

    async def _log(self, job: Job, outcome: Outcome) -> None:
        try:
            await asyncio.to_thread(
                self.store.log_delivery,
                job.alert_id,
                job.rule_id,
                job.channel,
                job.target,
                job.attempts,
                outcome.status,
                outcome.code,
                outcome.error,
            )
        except Exception as exc:  # the delivery itself happened; losing its log row is not fatal
            log.error("alert.log_failed", error=str(exc))

    async def _attempt(self, job: Job) -> Outcome:
        if job.channel == "webhook":
            return await self._webhook(job)
        return await asyncio.to_thread(self._email, job)

    async def _webhook(self, job: Job) -> Outcome:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.alert_webhook_timeout)
        body = orjson.dumps(job.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "defimon-alerts",
            "X-Defimon-Signature": signature(job.secret or "", body),
            "X-Defimon-Alert-Id": job.alert_id,
            "X-Defimon-Attempt": str(job.attempts),
        }
        try:
            response = await self._http.post(job.target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome("failed", error=f"{type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return Outcome("delivered", code)
        status = "failed" if code >= 500 or code in RETRYABLE_HTTP else "rejected"
        return Outcome(status, code, response.text[:500])

    def _email(self, job: Job) -> Outcome:
        s = self.settings
        if not s.smtp_host:
            return Outcome("failed", error="no SMTP server configured (DEFIMON_SMTP_HOST)")
        p = job.payload
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = job.target
        msg["Subject"] = f"[defimon] {p.get('rule_name')}: {p.get('message')}"
        msg["X-Defimon-Alert-Id"] = job.alert_id
        msg.set_content(
            f"{p.get('message')}\n\n"
            f"rule: {p.get('rule_name')} ({p.get('rule_id')})\n"
            f"subject: {p.get('subject_id')}\n"
            f"block: {p.get('block_number')} {p.get('block_hash')} at {p.get('block_time')}\n\n"
            + orjson.dumps(p, option=orjson.OPT_INDENT_2).decode()
        )
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_user:
                    smtp.login(s.smtp_user, s.smtp_password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            permanent = all(c >= 500 for c in codes)
            return Outcome("rejected" if permanent else "failed", max(codes), str(exc))
        except smtplib.SMTPResponseException as exc:
            return Outcome(
                "rejected" if exc.smtp_code >= 500 else "failed", exc.smtp_code, str(exc)
            )
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome("failed", error=f"{type(exc).__name__}: {exc}")
        return Outcome("delivered", 250)

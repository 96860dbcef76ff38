"""POST each event as JSON, signed the way the Standard Webhooks specification describes.

Every request carries::

    webhook-id: <event id>                  the same on every retry, so receivers can deduplicate
    webhook-timestamp: <unix seconds>       of this attempt; receivers reject stale ones
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

keyed by the base64-decoded part of the ``whsec_...`` secret. The body is the Standard Webhooks
envelope ``{"type": "gate.open", "timestamp": ..., "gate": ..., "data": <Event.to_dict()>}``.

2xx is delivered. 5xx, 408, 425, 429, timeouts and refused connections are retried with
exponential backoff and jitter (doubling from ``backoff_initial_s`` up to ``backoff_max_s``),
waiting at least as long as a ``Retry-After`` asks, until the event is ``max_age_s`` old: then
it is marked expired. So a receiver that is back within ``max_age_s`` (30 s by default) gets the
event. ``max_attempts``, when set, also bounds the number of attempts (then: failed). 410 Gone
means the receiver wants nothing more: this hook stops sending (until restart). Other 4xx
answers are not retried.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import random
import ssl
import time
import urllib.parse
from collections.abc import Callable

from .base import Delivery, DeliveryError, Hook
from .config import WebhookHookConfig, decode_webhook_secret

__all__ = ["WebhookHook", "sign", "webhook_body"]

_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_UNCOUNTED = 1_000_000  # max_attempts: null; the base class then bounds retries by max_age_s alone
_USER_AGENT = "gatekeeper-webhook/1"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def webhook_body(delivery: Delivery, gate: str) -> bytes:
    """The JSON body of one event (the same bytes on every attempt)."""
    event = delivery.event
    envelope = {
        "type": f"gate.{event.event.value.lower()}",
        "timestamp": dt.datetime.fromtimestamp(delivery.created_at, dt.timezone.utc).isoformat(timespec="milliseconds"),
        "gate": gate,
        "data": event.to_dict(),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is read the same way
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - now)


class WebhookHook(Hook):
    """Sends events to one URL; ``secret`` (the decoded HMAC key) overrides the config's ``secret``."""

    kind = "webhook"

    def __init__(
        self,
        config: WebhookHookConfig,
        *,
        name: str = "webhook",
        gate: str = "gate",
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            name,
            events=config.events,
            max_age_s=config.max_age_s,
            queue_size=config.queue_size,
            max_attempts=_UNCOUNTED if config.max_attempts is None else config.max_attempts,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
            clock=clock,
            rng=rng,
        )
        self.config = config
        self.gate = gate
        if secret is None and config.secret is not None:
            secret = decode_webhook_secret(config.secret)
        self._key = secret
        self._url = urllib.parse.urlsplit(config.url)
        self._gone = False  # the receiver answered 410 Gone
        self._ssl = ssl.create_default_context() if self._url.scheme == "https" else None

    @property
    def signed(self) -> bool:
        return self._key is not None

    @property
    def gone(self) -> bool:
        """Whether the receiver answered 410 Gone, after which this hook sends nothing."""
        return self._gone

    def headers(self, delivery: Delivery, body: bytes, timestamp: int) -> dict[str, str]:
        """The request headers of one attempt."""
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": delivery.event.id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, delivery.event.id, timestamp, body)
        if self._url.username is not None:
            userinfo = f"{urllib.parse.unquote(self._url.username)}:{urllib.parse.unquote(self._url.password or '')}"
            headers["authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
        return headers

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        if self._gone:
            raise DeliveryError(
                "the receiver answered 410 Gone earlier; nothing more is sent until restart", retry=False
            )
        body = webhook_body(delivery, self.gate)
        headers = self.headers(delivery, body, int(self._clock()))
        try:
            status, reason, retry_after, text = self._post(body, headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS, TLS, bad response
            raise DeliveryError(_describe(exc, self.config.timeout_s)) from None
        if 200 <= status < 300:
            return
        detail = f"HTTP {status} {reason}".rstrip() + (f": {text}" if text else "")
        if status == 410:
            self._gone = True
            self._log.error(
                "%s: %s answered 410 Gone; this hook sends nothing more until restart", self.name, self.config.url
            )
            raise DeliveryError(detail, retry=False)
        raise DeliveryError(
            detail, retry=status in _RETRYABLE, retry_after=parse_retry_after(retry_after, self._clock())
        )

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str, str | None, str]:
        url = self._url
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=self.config.timeout_s, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=self.config.timeout_s)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            # Only a little of the answer is kept, for the log; a receiver's page of HTML helps nobody.
            text = resp.read(512).decode("utf-8", "replace").strip().replace("\n", " ")[:200]
            return resp.status, resp.reason, resp.getheader("retry-after"), text
        finally:
            conn.close()


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within timeout_s={timeout_s:g}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"

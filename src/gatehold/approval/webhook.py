"""The approval webhook: a signed POST to a configured URL for every new approval request.

A webhook is a notification only. The request still waits for a decision on the approval page
or from the CLI, so a delivery that fails in the end is audited and logged, never raised: the
call it concerns is held (or fails closed on expiry) exactly as without a webhook.

Every delivery carries

- ``X-Gatehold-Event: approval.created``;
- ``X-Gatehold-Delivery``: a random id, the same on every retry of one delivery, for receivers
  that de-duplicate;
- ``X-Gatehold-Signature: t=<unix seconds>,v1=<hex>`` where the hex is HMAC-SHA256 under the
  configured secret over ``f"{t}."`` followed by the exact body bytes. Each attempt is signed
  afresh. Receivers check it with ``verify_signature``, which also rejects stale timestamps so a
  captured delivery cannot be replayed later.

Redirects are not followed (a 3xx is a failure): the signed body, which names a pending call,
goes to the configured URL and nowhere else. The ``slack`` format leaves argument values out:
they go to a third-party chat service, and the approval page shows them to whoever decides.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from gatehold.approval.store import Approval
from gatehold.auditor import Auditor
from gatehold.config import WebhookSettings

log = logging.getLogger("gatehold.approval.webhook")

EVENT = "approval.created"
_MAX_BACKOFF_SECONDS = 30.0
_MAX_SIGNATURE_HEADER = 1024
_MAX_SLACK_VALUE = 300  # characters of one name or id shown in Slack, before escaping
_MAX_SLACK_REASON = 1000  # a section's text may hold 3000 characters; escaping can grow it


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` followed by ``body``, keyed with ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str, body: bytes, *, now: float | None = None,
                     tolerance_seconds: float = 300) -> bool:
    """For receivers: whether ``header`` (``X-Gatehold-Signature``) signs ``body`` under ``secret``.

    False for a malformed header, a timestamp further than ``tolerance_seconds`` from ``now``
    (either way), or no ``v1`` value that matches. Several ``v1`` values are accepted, any one
    of which may match. The comparison is constant-time.
    """
    if not secret or len(header) > _MAX_SIGNATURE_HEADER:
        return False
    timestamps: list[str] = []
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            candidates.append(value)
    if len(timestamps) != 1 or not candidates:
        return False
    stamp = timestamps[0]
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).encode()
    matched = False
    for candidate in candidates:  # check every candidate: no early exit that times the position
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return matched


def slack_escape(value: object) -> str:
    """``value`` as text safe inside Slack mrkdwn: its control characters ``&``, ``<``, ``>`` escaped."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(value: object, limit: int = _MAX_SLACK_VALUE) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _expiry_text(expires_at: float) -> str:
    """Slack's date token (shown in each reader's time zone) with a UTC fallback."""
    fallback = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(expires_at)}^{{date_short_pretty}} at {{time}}|{fallback}>"


def slack_message(approval: Approval, url: str) -> dict[str, Any]:
    """A Slack-compatible ``{text, blocks}`` message for a new request, without argument values."""
    who = slack_escape(_one_line(approval.principal))
    target = slack_escape(_one_line(f"{approval.server}.{approval.tool}"))
    reason = slack_escape(_one_line(approval.reason or "(no reason given)", _MAX_SLACK_REASON))
    rule = slack_escape(_one_line(approval.rule_id or "-"))
    link = slack_escape(url)
    return {
        "text": f"Approval requested: {who} wants to call {target}",
        "blocks": [
            {"type": "section",
             "text": {"type": "mrkdwn", "text": f"*Approval requested*: *{who}* wants to call `{target}`"}},
            {"type": "section",
             "fields": [
                 {"type": "mrkdwn", "text": f"*Requested by*\n{who}"},
                 {"type": "mrkdwn", "text": f"*Tool*\n`{target}`"},
                 {"type": "mrkdwn", "text": f"*Rule*\n{rule}"},
                 {"type": "mrkdwn", "text": f"*Expires*\n{_expiry_text(approval.expires_at)}"},
             ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason*\n{reason}"}},
            {"type": "section",
             "text": {"type": "mrkdwn",
                      "text": f"<{link}|Review the request and its arguments> (approve or deny there)"}},
        ],
    }


def _dumps(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # e.g. an integer beyond 64 bits in the arguments: the stdlib encoder takes it
        return json.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":")).encode()


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isascii() and value.isdigit() else 0.0


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a URL urllib cannot split: deliveries to it fail, and are audited
        return "(invalid url)"


class WebhookNotifier:
    """Posts every new approval request to ``settings.url``, signed, retried, in the background."""

    def __init__(self, settings: WebhookSettings, secret: str, *, page_url: Callable[[str], str],
                 auditor: Auditor, backoff_seconds: float = 0.5):
        self._settings = settings
        self._secret = secret
        self._page_url = page_url
        self._auditor = auditor
        self._backoff = backoff_seconds
        # audit and logs name the receiver by origin only: a webhook URL's path often holds a token
        self._destination = _origin(settings.url)
        self._client = httpx.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False,
                                         trust_env=False)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._closed = False

    # -- the store's listener ------------------------------------------------------------------

    def listener(self, event: str, approval: Approval) -> None:
        """For ``ApprovalStore.listeners``: a new request is delivered in the background. Never raises."""
        if event != "created" or self._closed:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._deliver_in_background(approval),
                                                          name=f"gatehold-webhook-{approval.id}")
        except Exception:
            # A webhook only notifies; the request still waits for a decision on the page or CLI.
            log.exception("could not schedule the webhook for approval %s", approval.id)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_background(self, approval: Approval) -> bool:
        try:
            return await self.deliver(approval)
        except asyncio.CancelledError:
            raise
        except Exception:  # a notification, not a control (the request still waits); nobody awaits this task
            log.exception("webhook for approval %s failed", approval.id)
            return False

    # -- delivery ------------------------------------------------------------------------------

    def body(self, approval: Approval) -> bytes:
        url = self._page_url(approval.id)
        if self._settings.format == "slack":
            return _dumps(slack_message(approval, url))
        return _dumps({"event": EVENT, "approval": approval.public(), "url": url})

    async def deliver(self, approval: Approval) -> bool:
        """POST ``approval`` to the webhook; True once a 2xx answers.

        Network errors, timeouts, 429 and 5xx are retried up to ``settings.retries`` more times
        with exponential backoff; any other status is final. A delivery that fails in the end is
        audited and False is returned, never raised: a webhook is a notification, and the
        approval still waits on the page and the CLI.
        """
        body = self.body(approval)
        delivery = str(uuid.uuid4())
        attempts = 0
        outcome: dict[str, Any] = {}
        for attempt in range(1, self._settings.retries + 2):
            attempts = attempt
            retry_after = 0.0
            try:
                status, retry_after = await self._post(body, delivery)
            except httpx.InvalidURL as exc:  # configuration, not the network: retrying cannot help
                outcome = {"error": type(exc).__name__}
                retriable = False
            except (httpx.HTTPError, OSError) as exc:  # OSError covers the attempt's TimeoutError
                # the class only: a message may repeat the URL, whose path can be a credential
                outcome = {"error": type(exc).__name__}
                retriable = True
            else:
                if 200 <= status < 300:
                    return True
                outcome = {"status": status}
                retriable = status == 429 or status >= 500
            if not retriable or attempt > self._settings.retries:
                break
            delay = max(self._backoff * 2 ** (attempt - 1), retry_after)
            await asyncio.sleep(min(delay, _MAX_BACKOFF_SECONDS))
        log.warning("webhook delivery %s for approval %s to %s failed after %d attempt(s): %s",
                    delivery, approval.id, self._destination, attempts, outcome)
        self._auditor.lifecycle("webhook delivery failed", {
            "approval_id": approval.id, "delivery_id": delivery, "destination": self._destination,
            "attempts": attempts, **outcome,
        })
        return False

    async def _post(self, body: bytes, delivery: str) -> tuple[int, float]:
        """One attempt: the status and any Retry-After seconds. The response body is never read."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Gatehold-Event": EVENT,
            "X-Gatehold-Delivery": delivery,
            "X-Gatehold-Signature": f"t={timestamp},v1={sign(self._secret, timestamp, body)}",
        }
        # httpx's timeout bounds each read; this bounds the whole attempt (a receiver trickling bytes)
        async with asyncio.timeout(self._settings.timeout_seconds):
            async with self._client.stream("POST", self._settings.url, content=body, headers=headers) as response:
                return response.status_code, _retry_after(response)

    async def aclose(self) -> None:
        """Stop pending deliveries and close the HTTP client."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

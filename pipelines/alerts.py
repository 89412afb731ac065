"""Alerts (issue 16): a failed weekly run, a monitoring threshold crossed, a new model kept as challenger.

Sent as JSON to ``UPSTREAM_ALERTS__WEBHOOK_URL`` and, when SMTP is configured, by email. The body has a
``text`` field, which Slack and Teams incoming webhooks display as the message, plus structured fields
(``event``, ``week``, ``link``, ``details``) for anything else that reads it. Alerts carry no personal
data: only the week, step names, feature/source names and whole-population numbers. The standard library
sends both (urllib, smtplib): one POST and one email a week need no client library.

Sending never fails the run: an alert that cannot be delivered is logged (and the run page still shows
the run's state), because a broken webhook must not stop the lists being published.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from upstream.settings import Settings

log = logging.getLogger(__name__)

EVENTS = ("run_failed", "monitoring_threshold", "challenger_kept")
MAX_DETAILS = 20


@dataclass(frozen=True)
class Alert:
    event: str
    week: str
    summary: str
    details: list[str] = field(default_factory=list)
    path: str = "/ui/runs"

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown alert event {self.event!r}")

    def link(self, settings: Settings) -> str:
        return settings.alerts.public_url.rstrip("/") + self.path

    def payload(self, settings: Settings) -> dict[str, Any]:
        details = self.details[:MAX_DETAILS]
        more = len(self.details) - len(details)
        lines = [f"Upstream {self.week}: {self.summary}", *(f"- {d}" for d in details)]
        if more > 0:
            lines.append(f"- and {more} more")
        lines.append(self.link(settings))
        return {
            "event": self.event,
            "week": self.week,
            "link": self.link(settings),
            "summary": self.summary,
            "details": details,
            "text": "\n".join(lines),
        }


@dataclass
class Delivery:
    webhook: bool | None = None  # None: not configured
    email: bool | None = None


def send_alert(alert: Alert, settings: Settings) -> Delivery:
    """Post the alert to the webhook and email it, where configured. Returns what was delivered."""
    cfg = settings.alerts
    payload = alert.payload(settings)
    delivery = Delivery()
    if cfg.webhook_url is not None and cfg.webhook_url.get_secret_value():
        delivery.webhook = _post(cfg.webhook_url.get_secret_value(), payload, cfg.timeout_seconds)
    if cfg.smtp_host and cfg.email_to:
        delivery.email = _email(payload, settings)
    return delivery


def _post(url: str, payload: dict[str, Any], timeout: float) -> bool:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "upstream-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ok = 200 <= response.status < 300
    except OSError as exc:  # URLError, HTTPError, timeouts
        # The URL may hold a token: name the event, never the URL.
        log.warning("alert %s could not be posted to the webhook (%s)", payload["event"], type(exc).__name__)
        return False
    if not ok:
        log.warning("alert %s: the webhook answered %s", payload["event"], response.status)
    return ok


def _email(payload: dict[str, Any], settings: Settings) -> bool:
    cfg = settings.alerts
    message = EmailMessage()
    message["Subject"] = f"[Upstream] {payload['week']}: {payload['summary']}"
    message["From"] = cfg.email_from
    message["To"] = ", ".join(cfg.email_to)
    message.set_content(payload["text"])
    try:
        with smtplib.SMTP(cfg.smtp_host or "", cfg.smtp_port, timeout=cfg.timeout_seconds) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_username and cfg.smtp_password is not None:
                smtp.login(cfg.smtp_username, cfg.smtp_password.get_secret_value())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("alert %s could not be emailed (%s)", payload["event"], type(exc).__name__)
        return False
    return True


# --- the three events ------------------------------------------------------------------------------


def run_failed(week: str, step: str, error_type: str) -> Alert:
    """The exception's type only: its message could quote a value from the delivery."""
    return Alert("run_failed", week, f"the weekly run failed at step {step} ({error_type}); the last published week is still served")


def monitoring_threshold(week: str, texts: list[str]) -> Alert:
    return Alert("monitoring_threshold", week, f"{len(texts)} monitoring threshold(s) crossed", texts, "/ui/monitoring")


def challenger_kept(week: str, model_name: str, version: str, reasons: list[str]) -> Alert:
    return Alert(
        "challenger_kept",
        week,
        f"the model trained this run ({model_name} v{version}) was kept as challenger; the champion still scores",
        reasons,
        "/ui/monitoring",
    )

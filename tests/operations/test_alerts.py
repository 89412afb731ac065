"""Alerts reach a REAL local HTTP receiver and a REAL local SMTP server (ephemeral ports), carry the
event, week, link and a Teams/Slack ``text``, and no personal data; a dead receiver never raises."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines import alerts
from upstream.settings import AlertSettings, Settings


class Receiver:
    """A webhook receiver on an ephemeral port that keeps what it was sent."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/T0KEN"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Keep(Message):
        def __init__(self) -> None:
            super().__init__()
            self.messages = []

        def handle_message(self, message) -> None:
            self.messages.append(message)

    handler = Keep()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _settings(tmp_path, **alert_settings) -> Settings:
    return Settings(home=tmp_path, alerts=AlertSettings(public_url="https://upstream.example.nhs.uk", **alert_settings))


def test_webhook_gets_event_week_link_and_text(tmp_path):
    with Receiver() as receiver:
        settings = _settings(tmp_path, webhook_url=receiver.url)
        alert = alerts.monitoring_threshold("2026-W48", ["feature drift: age smd 0.24 (threshold 0.2)"])
        delivered = alerts.send_alert(alert, settings)
    assert delivered.webhook is True and delivered.email is None
    (got,) = receiver.received
    assert got["path"] == "/hook/T0KEN" and got["type"] == "application/json"
    body = got["body"]
    assert body["event"] == "monitoring_threshold"
    assert body["week"] == "2026-W48"
    assert body["link"] == "https://upstream.example.nhs.uk/ui/monitoring"
    assert "age smd 0.24" in body["text"] and body["link"] in body["text"]
    assert body["details"] == ["feature drift: age smd 0.24 (threshold 0.2)"]


def test_failed_run_alert_by_webhook_and_email(tmp_path, smtp_server):
    handler, port = smtp_server
    with Receiver() as receiver:
        settings = _settings(
            tmp_path, webhook_url=receiver.url, smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@example.org"]
        )
        delivered = alerts.send_alert(alerts.run_failed("2026-W48", "score", "InjectedFailure"), settings)
    assert (delivered.webhook, delivered.email) == (True, True)
    assert receiver.received[0]["body"]["event"] == "run_failed"
    (mail,) = handler.messages
    assert mail["To"] == "ops@example.org"
    assert mail["Subject"].startswith("[Upstream] 2026-W48: the weekly run failed at step score")
    text = mail.get_payload()
    assert "InjectedFailure" in text and "https://upstream.example.nhs.uk/ui/runs" in text


def test_a_dead_or_refusing_receiver_never_raises(tmp_path):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    delivered = alerts.send_alert(alerts.run_failed("2026-W48", "ingest", "BadFileError"), _settings(tmp_path, webhook_url=dead))
    assert delivered.webhook is False
    with Receiver(status=500) as receiver:
        delivered = alerts.send_alert(alerts.run_failed("2026-W48", "ingest", "X"), _settings(tmp_path, webhook_url=receiver.url))
    assert delivered.webhook is False and len(receiver.received) == 1


def test_nothing_configured_sends_nothing_and_unknown_events_are_refused(tmp_path):
    delivered = alerts.send_alert(alerts.challenger_kept("2026-W48", "upstream-crisis", "3", ["slope 1.4"]), _settings(tmp_path))
    assert (delivered.webhook, delivered.email) == (None, None)
    with pytest.raises(ValueError):
        alerts.Alert("something_else", "2026-W48", "x")


def test_webhook_url_is_a_secret_not_allowed_in_toml(tmp_path, monkeypatch):
    config = tmp_path / "upstream.toml"
    config.write_text('[alerts]\nwebhook_url = "https://hooks.example/T0KEN"\n')
    monkeypatch.setenv("UPSTREAM_CONFIG", str(config))
    with pytest.raises(ValueError, match="UPSTREAM_ALERTS__WEBHOOK_URL"):
        Settings()
    monkeypatch.delenv("UPSTREAM_CONFIG")
    monkeypatch.setenv("UPSTREAM_ALERTS__WEBHOOK_URL", "https://hooks.example/T0KEN")
    assert "T0KEN" not in repr(Settings().alerts)

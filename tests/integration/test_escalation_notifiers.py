"""Notifiers against real servers: an aiosmtpd SMTP server and an HTTP webhook receiver."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.escalation.notifiers import DeliveryError, EmailNotifier, Outbound, WebhookNotifier
from shared.embedded import free_port

pytestmark = pytest.mark.integration


class Mailbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the parsed message with its envelope recipients."""
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(([str(r) for r in envelope.rcpt_tos], message))
        return "250 Message accepted for delivery"


class HookReceiver:
    """A tiny HTTP server recording JSON POSTs; `fail[path]` answers that many 503s first."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.fail: dict[str, int] = {}
        self.status: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((self.path, dict(self.headers.items()),
                                          json.loads(body)))
                code = receiver.status.get(self.path, 200)
                if receiver.fail.get(self.path, 0) > 0:
                    receiver.fail[self.path] -= 1
                    code = 503
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def to(self, path: str) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Requests received on path."""
        return [r for r in self.requests if r[0] == path]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free loopback port."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    """A real HTTP webhook receiver on a free loopback port."""
    receiver = HookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def outbound(address: str, key: str = "key-1") -> Outbound:
    """A page to address."""
    return Outbound(idempotency_key=key, kind="page", incident_id="INC-7", recipient="alice",
                    address=address, subject="[SEV1] INC-7 tier 1: errors",
                    text="INCIDENT INC-7: you are paged", payload={"incident_id": "INC-7"})


class TestWebhook:
    """The generic webhook notifier."""

    async def test_posts_json_with_idempotency_key(self, hooks: HookReceiver) -> None:
        """One POST with the payload as JSON and the key in the Idempotency-Key header."""
        notifier = WebhookNotifier(timeout_s=2)
        await notifier.send(outbound(hooks.url + "/alice"))
        await notifier.aclose()
        [(path, headers, body)] = hooks.requests
        assert path == "/alice"
        assert headers["Idempotency-Key"] == "key-1"
        assert headers["Content-Type"] == "application/json"
        assert body == {"incident_id": "INC-7"}

    async def test_retries_5xx_with_the_same_key(self, hooks: HookReceiver) -> None:
        """Two 503s, then 200: delivered, and every try carried the same key."""
        hooks.fail["/alice"] = 2
        notifier = WebhookNotifier(timeout_s=2, attempts=3, backoff_s=0.01)
        await notifier.send(outbound(hooks.url + "/alice"))
        await notifier.aclose()
        assert [h["Idempotency-Key"] for _, h, _ in hooks.to("/alice")] == ["key-1"] * 3

    async def test_gives_up_after_bounded_tries(self, hooks: HookReceiver) -> None:
        """A receiver that keeps answering 503 fails the attempt after `attempts` tries."""
        hooks.fail["/alice"] = 10
        notifier = WebhookNotifier(timeout_s=2, attempts=2, backoff_s=0.01)
        with pytest.raises(DeliveryError, match="503"):
            await notifier.send(outbound(hooks.url + "/alice"))
        await notifier.aclose()
        assert len(hooks.to("/alice")) == 2

    async def test_client_error_is_not_retried(self, hooks: HookReceiver) -> None:
        """A 4xx means the receiver rejects this message: one try, then DeliveryError."""
        hooks.status["/alice"] = 404
        notifier = WebhookNotifier(timeout_s=2, attempts=3, backoff_s=0.01)
        with pytest.raises(DeliveryError, match="404"):
            await notifier.send(outbound(hooks.url + "/alice"))
        await notifier.aclose()
        assert len(hooks.to("/alice")) == 1

    async def test_unreachable_receiver_is_a_delivery_error(self) -> None:
        """Connection refused (after retries) surfaces as DeliveryError, not a crash."""
        notifier = WebhookNotifier(timeout_s=1, attempts=2, backoff_s=0.01)
        with pytest.raises(DeliveryError, match="unreachable"):
            await notifier.send(outbound(f"http://127.0.0.1:{free_port()}/x"))
        await notifier.aclose()


class TestEmail:
    """The SMTP notifier."""

    async def test_delivers_plain_text_with_derived_message_id(
        self, mailbox: tuple[Mailbox, int]
    ) -> None:
        """The relay receives one message with subject, body, and Message-ID from the key."""
        box, port = mailbox
        notifier = EmailNotifier(host="127.0.0.1", port=port, sender="pager@example.org")
        await notifier.send(outbound("alice@example.com", key="k-42"))
        [(rcpts, message)] = box.messages
        assert rcpts == ["alice@example.com"]
        assert message["Subject"] == "[SEV1] INC-7 tier 1: errors"
        assert message["Message-ID"] == "<k-42@example.org>"
        assert message["X-Incident-Id"] == "INC-7"
        body = message.get_body(("plain",))
        assert body is not None
        assert "INCIDENT INC-7: you are paged" in body.get_content()

    async def test_relay_down_is_a_delivery_error(self) -> None:
        """No SMTP server listening: DeliveryError naming the failure."""
        notifier = EmailNotifier(host="127.0.0.1", port=free_port(), timeout_s=2)
        with pytest.raises(DeliveryError, match="SMTP"):
            await notifier.send(outbound("alice@example.com"))

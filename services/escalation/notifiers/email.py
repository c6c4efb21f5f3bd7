"""SMTP e-mail notifier (stdlib `smtplib` in a worker thread).

Why stdlib in a thread rather than an async SMTP client: it is one more dependency
less, pages are few, and `asyncio.to_thread` keeps the event loop free while a
slow relay answers. One connection per message keeps failure handling simple:
a broken connection never poisons the next page.

The `Message-ID` is derived from the idempotency key, so a resend after a crash
between sending and recording carries the same id and mail systems and clients
can recognise it. STARTTLS and login are used when configured
(`IR_ESCALATION_SMTP_*`).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from services.escalation.notifiers.base import DeliveryError, Notifier, Outbound


def message_id(idempotency_key: str, sender: str) -> str:
    """The Message-ID of the e-mail carrying idempotency_key."""
    domain = sender.rpartition("@")[2] or "incident-orchestrator.local"
    return f"<{idempotency_key}@{domain}>"


class EmailNotifier(Notifier):
    """Sends each message as a plain-text e-mail through one SMTP relay."""

    channel = "email"

    def __init__(self, *, host: str, port: int = 25, sender: str = "incidents@localhost",
                 username: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s

    def build(self, message: Outbound) -> EmailMessage:
        """The e-mail for message (headers and plain-text body)."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.address
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = message_id(message.idempotency_key, self.sender)
        mail["X-Incident-Id"] = message.incident_id
        mail["X-Idempotency-Key"] = message.idempotency_key
        mail.set_content(message.text)
        return mail

    async def send(self, message: Outbound) -> None:
        """Hand the e-mail to the SMTP relay; raise DeliveryError when it refuses."""
        mail = self.build(message)
        try:
            await asyncio.to_thread(self._deliver, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipient refused: {message.address}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {exc}") from exc

    def _deliver(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self._timeout_s) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(mail)

"""Notification channels behind one small interface (`base.Notifier`)."""

from services.escalation.notifiers.base import DeliveryError, Notifier, Outbound
from services.escalation.notifiers.email import EmailNotifier
from services.escalation.notifiers.webhook import WebhookNotifier

__all__ = ["DeliveryError", "EmailNotifier", "Notifier", "Outbound", "WebhookNotifier"]

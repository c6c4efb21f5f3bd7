"""Builds the escalation service: settings, schedule, catalog, notifiers, flow, runtime."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from services.escalation.api import build_router
from services.escalation.decisions import EscalationPlanner
from services.escalation.flow import EscalationFlow
from services.escalation.handlers import register
from services.escalation.notifiers import EmailNotifier, Notifier, WebhookNotifier
from services.escalation.policy import EscalationPolicy
from services.escalation.schedule import OnCallSchedule
from services.escalation.settings import EscalationSettings
from services.escalation.state import EscalationBook
from shared.catalog import ServiceCatalog
from shared.clock import Clock, SystemClock

# The pattern redactor lives with the investigator until it moves to shared/ (its docstring
# plans that); importing it beats a second copy of the rules.
from shared.redaction import PatternRedactor
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings

SERVICE = "escalation"


def build_notifiers(settings: EscalationSettings) -> dict[str, Notifier]:
    """The channels enabled by settings (e-mail needs an SMTP host)."""
    notifiers: dict[str, Notifier] = {}
    if settings.smtp_host:
        notifiers["email"] = EmailNotifier(
            host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
            username=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s,
        )
    if settings.webhook_enabled:
        notifiers["webhook"] = WebhookNotifier(
            timeout_s=settings.webhook_timeout_s, attempts=settings.webhook_attempts,
        )
    return notifiers


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    escalation: EscalationSettings | None = None,
    clock: Clock | None = None,
    notifiers: Mapping[str, Notifier] | None = None,
) -> ServiceRuntime:
    """The escalation service, ready for `start`/`run`; raises on an invalid schedule."""
    settings = settings or ServiceSettings()
    escalation = escalation or EscalationSettings()
    clock = clock or SystemClock(settings.time_scale)
    schedule = OnCallSchedule.load(escalation.oncall_path(settings.config_dir))
    catalog = ServiceCatalog.load(escalation.catalog_path(settings.config_dir))
    channels = dict(notifiers) if notifiers is not None else build_notifiers(escalation)
    planner = EscalationPlanner(
        policy=EscalationPolicy(clock.scaled, settle=timedelta(seconds=escalation.settle_window_s)),
        schedule=schedule, catalog=catalog,
        channels=frozenset(channels), ui_url=escalation.ui_url,
        max_attempts=escalation.max_send_attempts,
        retry_after=timedelta(seconds=escalation.tick_s),
    )
    runtime = build_runtime(SERVICE, kafka=kafka, settings=settings)
    flow = EscalationFlow(
        book=EscalationBook(SERVICE), planner=planner, notifiers=channels,
        publish=runtime.bus.publish, clock=clock, service=SERVICE,
        registry=runtime.bus.registry, redact=PatternRedactor().redact,
        retention=timedelta(seconds=escalation.retention_s),
    )
    runtime.http.include_router(build_router(flow, schedule))
    register(runtime, flow, tick_s=escalation.tick_s)
    return runtime


def main() -> None:
    """Entry point of `python -m services.escalation`."""
    run(create_runtime())

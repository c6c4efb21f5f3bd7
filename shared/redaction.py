"""Secret and PII redaction of everything that leaves the product.

Evidence, pages and reports quote logs, deploy notes and alert labels
verbatim, and those carry whatever a developer printed: bearer tokens,
passwords in connection strings, customers' e-mail addresses, card numbers.
The investigator's evidence and the escalation's pages pass a `Redactor`
first (ARCHITECTURE.md: "everything that leaves the product passes PII and
secret redaction").

The interface is one method, `redact(text) -> text`, plus `redact_value` that
walks JSON-like data, so a library-based redactor (a later issue) drops in.
`PatternRedactor` is the simple pattern set that ships now. Its rules are
ordered: key/value secrets first (so a password that happens to look like an
e-mail is caught as a password), then free-standing tokens, e-mails and card
numbers. A digit run is only taken for a card number when it passes the Luhn
check, so request ids, timestamps and versions stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Redactor(Protocol):
    """Removes secrets and personal data from text."""

    def redact(self, text: str) -> str:
        """The text with every secret and personal datum replaced by a marker."""
        ...


def marker(kind: str) -> str:
    """The replacement text for a redacted value of kind."""
    return f"[REDACTED:{kind}]"


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]


def _whole(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda _m: marker(kind)


def _keep_key(kind: str) -> Callable[[re.Match[str]], str]:
    # The key ("password=") stays: a reader needs to know *what* was hidden.
    return lambda m: f"{m.group('key')}{marker(kind)}"


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return marker("card") if _luhn_valid(digits) else match.group(0)


_SENSITIVE_KEYS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|client[_-]?secret|auth|authorization|session[_-]?id|cookie"
)

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                   re.DOTALL),
        _whole("private_key"),
    ),
    _Rule(
        "credentials",
        # user:password@host in URLs and connection strings.
        re.compile(r"(?P<key>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)", re.IGNORECASE),
        _keep_key("password"),
    ),
    _Rule(
        "bearer",
        re.compile(r"(?P<key>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
        _keep_key("token"),
    ),
    _Rule(
        "secret",
        re.compile(
            rf"(?P<key>[\"']?\b(?:[a-z0-9_-]*(?:{_SENSITIVE_KEYS}))[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED|bearer\b|basic\b)[^\s\"',;&}]+",
            re.IGNORECASE,
        ),
        _keep_key("secret"),
    ),
    _Rule("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"),
          _whole("token")),
    _Rule("aws_key", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), _whole("token")),
    _Rule(
        "vendor_token",
        # GitHub, Slack, Stripe and Anthropic/OpenAI style prefixed keys.
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
                   r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|sk-[A-Za-z0-9_-]{20,})"),
        _whole("token"),
    ),
    _Rule("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
          _whole("email")),
    _Rule("card", re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])"), _card),
)


class PatternRedactor:
    """Regex redaction of tokens, passwords, e-mail addresses and card numbers."""

    def __init__(self, rules: Sequence[_Rule] = _RULES) -> None:
        self._rules = tuple(rules)

    def redact(self, text: str) -> str:
        """The text with every match of every rule replaced by its marker."""
        for rule in self._rules:
            text = rule.pattern.sub(rule.replace, text)
        return text


def redact_value(redactor: Redactor, value: Any) -> Any:
    """Redact every string inside JSON-like data, dict keys included (they may quote logs)."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {redact_value(redactor, k): redact_value(redactor, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(redactor, v) for v in value)
    return value

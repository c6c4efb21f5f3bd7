"""Secrets and personal data are redacted from evidence; ordinary text is left alone."""

from __future__ import annotations

import pytest

from shared.redaction import PatternRedactor, marker, redact_value

pytestmark = pytest.mark.unit

REDACTOR = PatternRedactor()


class TestPatternRedactor:
    """Each pattern, and what must survive."""

    @pytest.mark.parametrize(("text", "secret", "kind"), [
        ("Authorization: Bearer abcdef0123456789xyz", "abcdef0123456789xyz", "token"),
        ("login failed password=hunter2 for bob", "hunter2", "secret"),
        ('{"api_key": "k-123456"}', "k-123456", "secret"),
        ("dsn postgres://app:s3cr3t@db:5432/orders", "s3cr3t", "password"),
        ("customer jane.doe@example.com complained", "jane.doe@example.com", "email"),
        ("charge 4111 1111 1111 1111 declined", "4111 1111 1111 1111", "card"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl", "eyJhbGci", "token"),
        ("key AKIAABCDEFGHIJKLMNOP leaked", "AKIAABCDEFGHIJKLMNOP", "token"),
        ("slack xoxb-1234567890-abcdefghij used", "xoxb-1234567890", "token"),
    ])
    def test_secret_is_replaced_by_its_marker(self, text: str, secret: str, kind: str) -> None:
        """The secret disappears and a marker naming its kind takes its place."""
        out = REDACTOR.redact(text)
        assert secret not in out
        assert marker(kind) in out

    @pytest.mark.parametrize("text", [
        "NullPointerException in PaymentProcessor.charge (version v2.4.1)",
        "order 1234567890123 placed",  # 13 digits failing the Luhn check: an id, not a card
        "ts 2026-11-21T12:00:00.123Z request_id=9f8e7d took 3000 ms",
        "token validation failed for author ci-bot",
        "cache entry corrupt: key=demo:cache:product:7",
    ])
    def test_ordinary_text_is_untouched(self, text: str) -> None:
        """Versions, ids, timestamps and words like "token" are not redacted."""
        assert REDACTOR.redact(text) == text

    def test_nested_data_is_redacted_and_keeps_its_shape(self) -> None:
        """Strings inside dicts (keys too), lists and tuples are redacted; numbers stay."""
        data = {"top_errors": {"mail bob@example.com": 3}, "lines": ["password=x1"],
                "pair": ("ok", "jane@example.org"), "ratio": 0.5}
        out = redact_value(REDACTOR, data)
        assert out["top_errors"] == {f"mail {marker('email')}": 3}
        assert out["lines"] == [f"password={marker('secret')}"]
        assert out["pair"] == ("ok", marker("email"))
        assert out["ratio"] == 0.5

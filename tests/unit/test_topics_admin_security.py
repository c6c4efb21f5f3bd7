"""``admin_client_kwargs`` maps security settings onto aiokafka's admin client arguments."""

from __future__ import annotations

import ssl

import pytest

from shared.topics_admin import admin_client_kwargs

pytestmark = pytest.mark.unit


def test_none_and_empty_mean_plaintext_defaults() -> None:
    """No security mapping gives no extra arguments."""
    assert admin_client_kwargs(None) == {}
    assert admin_client_kwargs({"sasl_mechanism": None}) == {}


def test_settings_spellings_are_translated() -> None:
    """KafkaSettings names become aiokafka names; aiokafka names pass through."""
    out = admin_client_kwargs(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
            "sasl_password": "pw",
        }
    )
    assert out == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }


def test_ssl_files_build_a_context() -> None:
    """A CA file alone yields an SSLContext (system CA bundle used as stand-in)."""
    cafile = ssl.get_default_verify_paths().cafile
    if cafile is None:
        pytest.skip("no system CA file")
    out = admin_client_kwargs({"security_protocol": "SSL", "ssl_cafile": cafile})
    assert isinstance(out["ssl_context"], ssl.SSLContext)


def test_unknown_option_is_rejected() -> None:
    """A typo fails loudly instead of silently connecting without security."""
    with pytest.raises(TypeError, match="sasl_pasword"):
        admin_client_kwargs({"sasl_pasword": "x"})

"""Store passwords stay out of reprs; broken broker URLs and unverified TLS fail early."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from framework.errors import ConfigurationError
from framework.settings import Settings
from framework.wire.connection import open_connection
from framework.wire.urls import broker_url_problem, disables_tls_verification, mask_url

STORE_URLS = [
    "redis://:r3dispw@cache:6379/0",
    "postgresql://app:pgpa55@db:5432/idem",
]


@pytest.mark.parametrize("url", STORE_URLS)
def test_idempotency_url_is_secret_in_repr(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """repr(Settings()) never shows the store's password; the masked form keeps the host."""
    monkeypatch.setenv("FRAMEWORK_IDEMPOTENCY_URL", url)
    settings = Settings()
    assert settings.idempotency_url.get_secret_value() == url
    password = url.split(":")[2].split("@")[0]
    assert password not in repr(settings) and password not in str(settings)
    assert password not in settings.masked_idempotency_url
    assert "@" in settings.masked_idempotency_url


def test_password_in_a_query_parameter_is_masked() -> None:
    """PostgreSQL also takes the password as ?password=...: masked too."""
    masked = mask_url("postgresql://app@db/idem?sslmode=require&password=pgpa55")
    assert masked == "postgresql://app@db/idem?sslmode=require&password=***"


@pytest.mark.parametrize(
    "url",
    [
        "amqp://u:pa55word@h:abc/",
        "amqp://u:pa55#word@h:5672/",
        "amqp://u:pa55/word@h/",
        "amqp://u:p@pa55word/x@h/",
        "amqp://u:pa55word@[::1/",
    ],
)
def test_broken_broker_url_is_explained_without_the_password(url: str) -> None:
    """Every parse failure has a reason that hints at percent-encoding and hides the password."""
    problem = broker_url_problem(url)
    assert problem is not None and "percent-encode" in problem
    assert "pa55" not in problem and "pa55" not in mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@localhost:5672/",
        "amqps://u:p%40ss@h/v?cafile=/ca.pem",
        "amqp://u:p@ss@h/",
    ],
)
def test_good_broker_urls_pass(url: str) -> None:
    """Well-formed URLs (an unencoded @ that still leaves one host is parsed as meant)."""
    assert broker_url_problem(url) is None
    Settings(amqp_url=url)


def test_settings_reject_a_non_numeric_port() -> None:
    """The CLI and services learn of a bad port when settings load, not from a traceback."""
    with pytest.raises(ValidationError, match="not a number from 0 to 65535"):
        Settings(amqp_url="amqp://u:p@h:abc/")


@pytest.mark.parametrize(
    ("url", "off"),
    [
        ("amqps://h/?no_verify_ssl=1", True),
        ("amqps://h/?no_verify_ssl=true", True),
        ("amqps://h/?no_verify_ssl=", True),
        ("amqps://h/?no_verify_ssl=0", False),
        ("amqps://h/?cafile=/ca.pem", False),
        ("amqp://h/?no_verify_ssl=1", False),
        ("amqps://h/?no_verify_ssl=1&no_verify_ssl=0", True),
        ("amqps://h/?no_verify_ssl=0&no_verify_ssl=1", True),
        ("amqps://h/?no%5Fverify%5Fssl=1", True),
    ],
)
def test_which_urls_turn_verification_off(url: str, off: bool) -> None:
    """aiormq verifies only when no_verify_ssl is absent or exactly 0."""
    assert disables_tls_verification(url) is off


async def test_unverified_tls_is_refused_before_connecting() -> None:
    """Without the opt-in, no connection is even attempted."""
    with pytest.raises(ConfigurationError, match="FRAMEWORK_ALLOW_INSECURE_TLS"):
        await open_connection("amqps://u:p@127.0.0.1:1/?no_verify_ssl=1", name="t", attempts=1)

"""Passwords in URLs never reach logs or terminals."""

from __future__ import annotations

import pytest

from framework.logs import mask_secrets
from framework.settings import Settings
from framework.urls import mask_text, mask_url


@pytest.mark.parametrize(("url", "masked"), [
    ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
    ("amqps://u:p%40ss@host/vhost?heartbeat=5", "amqps://u:***@host/vhost?heartbeat=5"),
    ("amqp://localhost/", "amqp://localhost/"),
    ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
])
def test_mask_url(url: str, masked: str) -> None:
    """The password is replaced, everything else stays readable."""
    assert mask_url(url) == masked


def test_mask_text_finds_urls_in_prose() -> None:
    """URLs embedded in error text are masked too."""
    text = "failed: amqp://bob:hunter2@h:1/ refused; retry postgresql://a:b@db/x"
    assert mask_text(text) == "failed: amqp://bob:***@h:1/ refused; retry postgresql://a:***@db/x"


def test_log_processor_masks_every_string_value() -> None:
    """The structlog processor masks URLs in any field of a log line."""
    event = {"event": "connect amqp://u:pw@h/", "url": "amqp://u:pw@h/", "n": 3}
    assert mask_secrets(None, "info", event) == {
        "event": "connect amqp://u:***@h/", "url": "amqp://u:***@h/", "n": 3}


def test_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings keep the URL secret in repr and expose a masked form."""
    monkeypatch.setenv("AMQP_URL", "amqp://svc:topsecret@broker:5672/")
    settings = Settings()
    assert "topsecret" not in repr(settings)
    assert settings.masked_amqp_url == "amqp://svc:***@broker:5672/"


def test_settings_reject_non_amqp_url() -> None:
    """A URL with the wrong scheme fails early, masked."""
    with pytest.raises(ValueError, match=r"http://u:\*\*\*@h/"):
        Settings(amqp_url="http://u:pw@h/")

"""Passwords in URLs never reach logs or terminals."""

from __future__ import annotations

import pytest

from framework.ops.logs import mask_secrets
from framework.settings import Settings
from framework.wire.urls import mask_text, mask_url, split_urls


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqps://u:p%40ss@host/vhost?heartbeat=5", "amqps://u:***@host/vhost?heartbeat=5"),
        ("amqp://localhost/", "amqp://localhost/"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
)
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
        "event": "connect amqp://u:***@h/",
        "url": "amqp://u:***@h/",
        "n": 3,
    }


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


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        ("amqp://u:p@a:5672/", ["amqp://u:p@a:5672/"]),
        ("amqp://u:p@a:5672/, amqp://v:q@b:5673/x", ["amqp://u:p@a:5672/", "amqp://v:q@b:5673/x"]),
        (
            "amqp://u:p@a:5672,b:5673,c/vh?heartbeat=5",
            [
                "amqp://u:p@a:5672/vh?heartbeat=5",
                "amqp://u:p@b:5673/vh?heartbeat=5",
                "amqp://u:p@c/vh?heartbeat=5",
            ],
        ),
        ("amqps://a,b", ["amqps://a", "amqps://b"]),
    ],
)
def test_split_urls(text: str, urls: list[str]) -> None:
    """A comma-separated list gives one URL per node; hosts inherit credentials and vhost."""
    assert split_urls(text) == urls


def test_split_urls_needs_a_url_first() -> None:
    """A bare host first cannot say which scheme and credentials to use: refused, masked."""
    with pytest.raises(ValueError, match="first broker address must be a URL"):
        split_urls("a:5672,amqp://u:p@b/")
    with pytest.raises(ValueError, match="no broker URL"):
        split_urls(" , ")


def test_settings_take_a_node_list_and_mask_every_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMQP_URL may list the nodes of a cluster; each is checked and shown masked."""
    monkeypatch.setenv("AMQP_URL", "amqp://s:pw1@a:5672/,amqp://s:pw2@b:5672/")
    settings = Settings()
    assert settings.amqp_urls == ["amqp://s:pw1@a:5672/", "amqp://s:pw2@b:5672/"]
    assert settings.masked_amqp_url == "amqp://s:***@a:5672/,amqp://s:***@b:5672/"
    with pytest.raises(ValueError, match=r"http://u:\*\*\*@h/"):
        Settings(amqp_url="amqp://a/,http://u:pw@h/")

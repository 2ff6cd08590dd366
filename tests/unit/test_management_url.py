"""Where the management API is, and that its password never shows."""

from __future__ import annotations

import pytest

from framework.errors import ConfigurationError
from framework.ops.management import ManagementApi


def test_default_is_amqp_host_with_amqp_credentials() -> None:
    """Without FRAMEWORK_MANAGEMENT_URL: http://<amqp host>:15672 as the AMQP user."""
    api = ManagementApi.from_urls("amqp://bob:s3cret@rabbit.local:5672/", None)
    assert api.base_url == "http://rabbit.local:15672"
    assert (api.username, api.password.get_secret_value(), api.vhost) == ("bob", "s3cret", "/")


def test_explicit_url_credentials_and_vhost() -> None:
    """A configured URL's credentials win; the vhost comes from the AMQP URL path."""
    api = ManagementApi.from_urls(
        "amqp://bob:s3cret@h/prod%2Feu", "https://ops:pw@mgmt:443/rabbitmq/"
    )
    assert api.base_url == "https://mgmt:443/rabbitmq"
    assert (api.username, api.password.get_secret_value()) == ("ops", "pw")
    assert api.vhost == "prod/eu"


def test_amqps_defaults_to_https_port() -> None:
    """TLS on AMQP means TLS on the management API too."""
    assert ManagementApi.from_urls("amqps://u:p@h/", None).base_url == "https://h:15671"


def test_password_is_masked_everywhere() -> None:
    """Neither the masked URL nor the repr shows the password."""
    api = ManagementApi.from_urls("amqp://bob:s3cret@h/", None)
    assert "s3cret" not in api.masked_url and "s3cret" not in repr(api)
    assert api.masked_url == "http://bob:***@h:15672/"


def test_non_http_management_url_is_a_configuration_error() -> None:
    """A wrong scheme is a user mistake, not a silent fallback."""
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        ManagementApi.from_urls("amqp://u:p@h/", "amqp://u:p@h:15672/")


def test_for_node_reads_the_management_url_from_settings() -> None:
    """for_node uses FRAMEWORK_MANAGEMENT_URL from the settings, else the node's own host."""
    from pydantic import SecretStr

    from framework.settings import Settings

    configured = Settings(management_url=SecretStr("http://ops:pw@mgmt.local:8080/"))
    api = ManagementApi.for_node("amqp://bob:s3cret@rabbit.local/", configured)
    assert (api.base_url, api.username) == ("http://mgmt.local:8080", "ops")
    unset = Settings(management_url=None)
    assert ManagementApi.for_node("amqp://bob:s3cret@rabbit.local/", unset).base_url == (
        "http://rabbit.local:15672"
    )

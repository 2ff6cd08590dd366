"""Helpers for testing services and the framework itself."""

from framework.testing.broker import BrokerAdmin, amqp_url_from_env_or_container

__all__ = ["BrokerAdmin", "amqp_url_from_env_or_container"]

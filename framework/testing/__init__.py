"""Helpers for testing services and the framework itself."""

from framework.testing.broker import BrokerAdmin, amqp_url_from_env_or_container
from framework.testing.waiting import eventually

__all__ = ["BrokerAdmin", "amqp_url_from_env_or_container", "eventually"]

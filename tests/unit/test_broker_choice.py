"""Which RabbitMQ the tests use: AMQP_URL, else localhost, else testcontainers, else one error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from framework.errors import BrokerUnavailable
from framework.settings import DEFAULT_AMQP_URL
from framework.testing.broker import (
    AMQP_PORT,
    RABBITMQ_IMAGE,
    READY_LOG_LINE,
    amqp_url_from_env_or_container,
    configured_container,
    localhost_answers,
    rabbitmq_container,
)

CONTAINER_URL = "amqp://guest:guest@192.0.2.1:32768/"
NO_DAEMON = "unix:///nonexistent/docker.sock"
# docker-py asks the daemon for its API version unless told one: told, nothing is contacted
OFFLINE_CLIENT = {"version": "1.41"}


class Attempts:
    """Records what the choice tried, in order."""

    def __init__(self, localhost: bool) -> None:
        self.localhost = localhost
        self.tried: list[str] = []

    def probe(self, url: str) -> bool:
        self.tried.append(f"probe {url}")
        return self.localhost

    @contextlib.contextmanager
    def container(self) -> Iterator[str]:
        self.tried.append("container")
        yield CONTAINER_URL


def choose(env: dict[str, str], attempts: Attempts) -> str:
    with amqp_url_from_env_or_container(env, attempts.probe, attempts.container) as url:
        return url


def test_amqp_url_wins_and_nothing_else_is_tried() -> None:
    """With AMQP_URL set, neither localhost nor a container is tried."""
    attempts = Attempts(localhost=True)
    assert choose({"AMQP_URL": "amqp://u:p@broker:5672/"}, attempts) == "amqp://u:p@broker:5672/"
    assert attempts.tried == []


def test_localhost_is_used_when_it_answers() -> None:
    """Without AMQP_URL, a RabbitMQ answering on localhost is used and no container started."""
    attempts = Attempts(localhost=True)
    assert choose({}, attempts) == DEFAULT_AMQP_URL
    assert attempts.tried == [f"probe {DEFAULT_AMQP_URL}"]


def test_container_only_when_localhost_is_silent() -> None:
    """Without AMQP_URL and with nothing on localhost, a testcontainers RabbitMQ is started."""
    attempts = Attempts(localhost=False)
    assert choose({"AMQP_URL": ""}, attempts) == CONTAINER_URL
    assert attempts.tried == [f"probe {DEFAULT_AMQP_URL}", "container"]


def test_probe_of_a_closed_port_is_false() -> None:
    """The localhost check says no (quickly, without raising) where nothing listens."""
    assert localhost_answers("amqp://guest:guest@127.0.0.1:1/", timeout=2.0) is False


def test_container_is_configured_with_the_new_wait_api() -> None:
    """The container imports and configures under `filterwarnings = error` (no deprecated
    testcontainers API): management image, AMQP port exposed, guest user, waits for startup."""
    container = configured_container(docker_client_kw=OFFLINE_CLIENT)
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy  # imported by now

    assert container.image.endswith(RABBITMQ_IMAGE)
    assert str(AMQP_PORT) in {str(port).split("/")[0] for port in container.ports}
    assert container.env["RABBITMQ_DEFAULT_USER"] == "guest"
    # testcontainers has no public getter for the strategy it will wait with
    strategy = container._wait_strategy
    assert isinstance(strategy, LogMessageWaitStrategy)
    assert strategy._message.pattern == READY_LOG_LINE


def test_without_docker_one_error_names_the_three_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Docker daemon: one BrokerUnavailable saying to set AMQP_URL, start RabbitMQ on
    localhost, or install Docker with the testcontainers extra."""
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    with (
        pytest.raises(BrokerUnavailable) as raised,
        amqp_url_from_env_or_container({}, probe=lambda url: False),
    ):
        pass  # pragma: no cover - never reached
    text = str(raised.value)
    assert "AMQP_URL" in text and DEFAULT_AMQP_URL in text
    assert "Docker" in text and "framework[testcontainers]" in text


def test_container_that_cannot_start_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that was configured but cannot start (no daemon) is the same clear error."""
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    with (
        pytest.raises(BrokerUnavailable, match="Docker could not start"),
        rabbitmq_container(docker_client_kw=OFFLINE_CLIENT),
    ):
        pass  # pragma: no cover - never reached


async def test_broker_answers_is_false_when_nothing_listens() -> None:
    """broker_answers reports a refused connection as False, without retrying."""
    from framework.wire.connection import broker_answers

    assert await broker_answers("amqp://guest:guest@127.0.0.1:1/", timeout=2.0) is False

"""From an installed wheel (no checkout), `framework demo` runs its bundled example services."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.settings import DEFAULT_AMQP_URL
from framework.testing.broker import amqp_url_from_env_or_container, localhost_answers
from tests.installed import Installed, build_wheel, install_into_empty_venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    into = tmp_path_factory.mktemp("wheel")
    return install_into_empty_venv(build_wheel(into), into)


@pytest.mark.timeout(90)  # ~6 s alone, plus building the install
@pytest.mark.parametrize("processes", [False, True], ids=["in-process", "processes"])
def test_demo_from_an_install(
    installed: Installed, tmp_path: Path, amqp_url: str, processes: bool
) -> None:
    """In an empty directory, the installed `framework demo` accounts for every order, with
    the services in process and as `framework run` processes."""
    args = ["demo", "--orders", "40", "--timeout", "60", "--outage", "0"]
    result = installed.framework(
        *args,
        *(["--processes"] if processes else []),
        cwd=tmp_path,
        env={"AMQP_URL": amqp_url, "COLUMNS": "120"},
        timeout=150,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "every order accounted for: 40/40" in result.stderr


def test_localhost_broker_is_found_without_amqp_url() -> None:
    """With AMQP_URL unset and RabbitMQ on localhost (as on this machine and in CI), the
    tests' broker is localhost's."""
    assert localhost_answers()
    with amqp_url_from_env_or_container({}) as url:
        assert url == DEFAULT_AMQP_URL

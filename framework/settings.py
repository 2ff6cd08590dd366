"""Typed settings, read from the environment at the edge (prefix `FRAMEWORK_`)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framework.wire.message_size import DEFAULT_MAX_MESSAGE_SIZE
from framework.wire.urls import broker_url_problem, mask_url, mask_urls, split_urls

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


class Settings(BaseSettings):
    """Framework-wide settings. `AMQP_URL` is honoured as well as `FRAMEWORK_AMQP_URL`; it may
    list the nodes of one cluster, comma-separated (see `framework.wire.urls.split_urls`)."""

    model_config = SettingsConfigDict(env_prefix="FRAMEWORK_", extra="forbid")

    amqp_url: SecretStr = Field(
        default=SecretStr(DEFAULT_AMQP_URL),
        validation_alias=AliasChoices("AMQP_URL", "FRAMEWORK_AMQP_URL", "amqp_url"),
    )
    service_name: str = "framework"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    idempotency_url: SecretStr = SecretStr("memory://")  # Redis/PostgreSQL URLs hold passwords
    idempotency_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds any one idempotency store call may take; a call past it defers "
        "the delivery (no attempt burned) as an unavailable store does.",
    )
    connect_attempts: int = Field(default=5, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    publish_timeout: float = Field(default=10.0, gt=0)
    heartbeat: int = Field(default=15, ge=0)
    shutdown_grace: float | None = Field(
        default=None,
        ge=0,
        description="Seconds a stopping worker gives in-flight work (FRAMEWORK_SHUTDOWN_GRACE); "
        "overrides every Worker.shutdown_grace when set. Closing adds at most "
        "framework.consume.shutdown.CLOSE_MARGIN seconds.",
    )
    clock_skew_tolerance: float = Field(
        default=1.0,
        ge=0,
        description="Seconds producer and worker clocks may disagree; a message expires only "
        "this long after its deadline (see framework.consume.deadlines).",
    )
    outbox_lease: float = Field(
        default=15.0,
        gt=0,
        description="Seconds an outbox row claimed by a relay is left alone (must outlast a "
        "publish); after a crash its rows are published again this long after the claim.",
    )
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    database_pool_size: int = Field(
        default=10,
        ge=1,
        description="PostgreSQL connections of a worker's `database` (= handler transactions "
        "at once); more than 10 helps a worker with a large prefetch.",
    )
    outbox_retention: float = Field(
        default=86400.0, gt=0, description="Seconds sent outbox rows are kept."
    )
    outbox_cleanup_interval: float = Field(default=60.0, gt=0)
    max_message_size: int | None = Field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        ge=1,
        description="Largest body send/publish accept, in bytes (None: no check). RabbitMQ "
        "4.x refuses larger ones by default (max_message_size 16 MiB; 3.x 128 MiB); match "
        "the broker's setting.",
    )
    management_url: SecretStr | None = None
    broker_consumer_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds the broker lets a delivery stay unacked (RabbitMQ's "
        "consumer_timeout, 30 min by default; a server setting no client can read): a worker "
        "whose handler timeout is at or above it refuses to start. Set it when the broker's "
        "is lower. Per-queue values (x-consumer-timeout, a policy's consumer-timeout) are "
        "read through the management API when FRAMEWORK_MANAGEMENT_URL is set.",
    )
    shed_by_forecast: bool = Field(
        default=False,
        description="Workers publish their measured rate and backlog on fw.load, and "
        "bus.send refuses a command with a deadline that its queue is predicted to miss "
        "(Overloaded with retry_after) instead of enqueueing it to expire "
        "(framework.resilience.load_status). Costs a report per worker each "
        "load_report_interval and a dictionary lookup per send; no broker round trip per send.",
    )
    load_report_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between a worker's load reports (with shed_by_forecast); a "
        "report is trusted for three intervals.",
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    topology_check_interval: float = Field(
        default=30.0,
        ge=0,
        description="Seconds between re-declares of the topology a bus declared (0: off): "
        "bindings lost when an exchange was deleted and re-created come back without waiting "
        "for a reconnect; a missing shared exchange is logged as an error.",
    )
    allow_insecure_tls: bool = Field(
        default=False,
        description="Accept an amqps:// URL with no_verify_ssl (certificate checks off): "
        "for development only; without it such a URL is refused.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _scheme_is_amqp(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        try:
            urls = split_urls(text)
        except ValueError as exc:  # e.g. a broken IPv6 host: say what to encode
            raise ValueError(broker_url_problem(text.split(",")[0].strip()) or str(exc)) from exc
        for url in urls:
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError(f"must start with amqp:// or amqps://, got {mask_url(url)!r}")
            problem = broker_url_problem(url)
            if problem is not None:
                raise ValueError(problem)
        return value

    @property
    def amqp_urls(self) -> list[str]:
        """The broker URL, or the URLs of the cluster's nodes, in the order to try them."""
        return split_urls(self.amqp_url.get_secret_value())

    @property
    def masked_amqp_url(self) -> str:
        """The broker URL(s) with passwords hidden, for logs and terminals."""
        return mask_urls(self.amqp_urls)

    @property
    def masked_idempotency_url(self) -> str:
        """The idempotency store URL with its password hidden, for logs and terminals."""
        return mask_url(self.idempotency_url.get_secret_value())

"""Typed settings, read from the environment at the edge (prefix `FRAMEWORK_`)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framework.urls import mask_url, mask_urls, split_urls

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


class Settings(BaseSettings):
    """Framework-wide settings. `AMQP_URL` is honoured as well as `FRAMEWORK_AMQP_URL`; it may
    list the nodes of one cluster, comma-separated (see `framework.urls.split_urls`)."""

    model_config = SettingsConfigDict(env_prefix="FRAMEWORK_", extra="forbid")

    amqp_url: SecretStr = Field(
        default=SecretStr(DEFAULT_AMQP_URL),
        validation_alias=AliasChoices("AMQP_URL", "FRAMEWORK_AMQP_URL", "amqp_url"),
    )
    service_name: str = "framework"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    idempotency_url: str = "memory://"
    connect_attempts: int = Field(default=5, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    publish_timeout: float = Field(default=10.0, gt=0)
    heartbeat: int = Field(default=15, ge=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    clock_skew_tolerance: float = Field(
        default=1.0,
        ge=0,
        description="Seconds producer and worker clocks may disagree; a message expires only "
        "this long after its deadline (see framework.deadlines).",
    )
    max_message_size: int | None = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Largest body send/publish accept, in bytes (None: no check). RabbitMQ "
        "4.x refuses larger ones by default (max_message_size 16 MiB; 3.x 128 MiB); match "
        "the broker's setting.",
    )
    management_url: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("amqp_url")
    @classmethod
    def _scheme_is_amqp(cls, value: SecretStr) -> SecretStr:
        for url in split_urls(value.get_secret_value()):
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError(
                    f"must start with amqp:// or amqps://, got {mask_url(url)!r}"
                )
        return value

    @property
    def amqp_urls(self) -> list[str]:
        """The broker URL, or the URLs of the cluster's nodes, in the order to try them."""
        return split_urls(self.amqp_url.get_secret_value())

    @property
    def masked_amqp_url(self) -> str:
        """The broker URL(s) with passwords hidden, for logs and terminals."""
        return mask_urls(self.amqp_urls)

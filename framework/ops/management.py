"""A small client for the RabbitMQ management HTTP API (queue depths and rates).

stdlib `urllib` run in a worker thread: one GET per refresh does not justify an HTTP
dependency. Credentials come from the management URL or else the AMQP URL and never
appear in errors or reprs.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

from framework.errors import ConfigurationError, FrameworkError
from framework.ops.queue_stats import QueueSample
from framework.wire.urls import mask_text, mask_url, split_urls

if TYPE_CHECKING:
    from framework.settings import Settings

_COLUMNS = ",".join(
    (
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "message_stats.publish_details.rate",
        "message_stats.deliver_get_details.rate",
    )
)


class ManagementUnavailable(FrameworkError):
    """The management API did not answer usefully (down, refused, auth failed, bad JSON)."""


@dataclass(frozen=True)
class ManagementApi:
    """Where the management API is and how to log in; `vhost` comes from the AMQP URL."""

    base_url: str
    username: str
    password: SecretStr = field(repr=False)
    vhost: str = "/"
    timeout: float = 3.0

    @classmethod
    def from_urls(
        cls, amqp_url: str, management_url: str | None, timeout: float = 3.0
    ) -> ManagementApi:
        """From `FRAMEWORK_MANAGEMENT_URL` (if set) and the AMQP URL's host and credentials
        (of the first node when `amqp_url` lists several)."""
        amqp = urlsplit(split_urls(amqp_url)[0])
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        if management_url:
            parts = urlsplit(management_url)
            if parts.scheme not in ("http", "https"):
                raise ConfigurationError(
                    f"FRAMEWORK_MANAGEMENT_URL must start with http:// or https://, "
                    f"got {mask_url(management_url)!r}"
                )
            if parts.username is not None:
                user, password = unquote(parts.username), unquote(parts.password or "")
            host = _host(parts.hostname or "localhost", parts.port)
            base = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"
        else:
            tls = amqp.scheme == "amqps"
            port = 15671 if tls else 15672
            base = f"{'https' if tls else 'http'}://{_host(amqp.hostname or 'localhost', port)}"
        return cls(base, user, SecretStr(password), vhost, timeout)

    @classmethod
    def for_node(cls, amqp_url: str, settings: Settings) -> ManagementApi:
        """The management API of the node at `amqp_url`, or the one
        `FRAMEWORK_MANAGEMENT_URL` names in `settings`."""
        configured = settings.management_url
        return cls.from_urls(amqp_url, configured.get_secret_value() if configured else None)

    @property
    def masked_url(self) -> str:
        """The API URL with the user shown and the password hidden."""
        scheme, rest = self.base_url.split("://", 1)
        return f"{scheme}://{self.username}:***@{rest}/"

    async def queues(self) -> list[QueueSample]:
        """Every queue of the vhost with depths, consumers and publish/deliver rates."""
        path = f"/api/queues/{quote(self.vhost, safe='')}?columns={_COLUMNS}"
        data = await asyncio.to_thread(self._get, path)
        if not isinstance(data, list):
            raise ManagementUnavailable(f"{self.masked_url}: unexpected answer to {path}")
        return [_sample(item) for item in data if isinstance(item, dict)]

    async def queue(self, name: str) -> dict[str, Any] | None:
        """One queue as the API shows it (arguments, effective policy); None if it does not
        exist."""
        path = f"/api/queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}"
        try:
            data = await asyncio.to_thread(self._get, path)
        except ManagementUnavailable as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return None
            raise
        if not isinstance(data, dict):
            raise ManagementUnavailable(f"{self.masked_url}: unexpected answer to {path}")
        return data

    def _get(self, path: str) -> Any:
        token = base64.b64encode(
            f"{self.username}:{self.password.get_secret_value()}".encode()
        ).decode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked to be http(s) above
            self.base_url + path, headers={"Authorization": f"Basic {token}"}
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            hint = " (check user and password)" if exc.code == 401 else ""
            raise ManagementUnavailable(
                f"management API {self.masked_url} answered HTTP {exc.code}{hint}"
            ) from exc
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, bad JSON
            reason = getattr(exc, "reason", exc)
            raise ManagementUnavailable(
                f"management API {self.masked_url} unreachable: {mask_text(str(reason))}"
            ) from exc


class _CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never sends the credentials to another origin.

    urllib copies every header, `Authorization` included, onto the redirected request; a
    redirect to another scheme, host or port (a compromised or misconfigured proxy, an
    `https` to `http` downgrade) would hand the management password to whoever answers there.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and origin(redirected.full_url) != origin(req.full_url):
            redirected.remove_header("Authorization")
        return redirected


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, the default port filled in: what credentials belong to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


_DEFAULT_PORTS = {"http": 80, "https": 443}
_OPENER = urllib.request.build_opener(_CredentialsStayHome)


def _host(hostname: str, port: int | None) -> str:
    name = f"[{hostname}]" if ":" in hostname else hostname
    return name if port is None else f"{name}:{port}"


def _sample(item: dict[str, Any]) -> QueueSample:
    stats = item.get("message_stats") or {}
    return QueueSample(
        name=str(item.get("name", "")),
        ready=int(item.get("messages_ready") or 0),
        unacked=int(item.get("messages_unacknowledged") or 0),
        consumers=int(item.get("consumers") or 0),
        publish_rate=_rate(stats, "publish_details"),
        deliver_rate=_rate(stats, "deliver_get_details"),
    )


def _rate(stats: dict[str, Any], key: str) -> float:
    """A rate from `message_stats`; absent means nothing happened recently (0.0)."""
    details = stats.get(key) or {}
    return float(details.get("rate") or 0.0)

"""A throwaway vhost with its own users, for tests that change permissions or delete
exchanges: never on vhost `/` of the shared broker.

Uses the management API (FRAMEWORK_MANAGEMENT_URL) when it answers, else `rabbitmqctl`
(both are admin paths to the same broker); fails loudly if neither is available.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


class VhostAdmin:
    """Create and delete vhosts and users, set permissions."""

    def __init__(self) -> None:
        base = os.environ.get("FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
        parts = urlsplit(base)
        self._base = f"{parts.scheme}://{parts.hostname}:{parts.port}/api"
        token = f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()
        self._auth = f"Basic {base64.b64encode(token).decode()}"
        self._http = self._api_answers()
        if not self._http and shutil.which("rabbitmqctl") is None:
            raise RuntimeError(
                f"neither the management API at {self._base} nor rabbitmqctl is available"
            )

    def _api_answers(self) -> bool:
        try:
            self._call("GET", "/overview")
        except (OSError, ValueError):
            return False
        return True

    def _call(self, method: str, path: str, body: object | None = None) -> None:
        request = urllib.request.Request(
            self._base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    @staticmethod
    def _ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    def add_vhost(self, vhost: str) -> None:
        if self._http:
            self._call("PUT", f"/vhosts/{quote(vhost, safe='')}", {})
        else:
            self._ctl("add_vhost", vhost)

    def delete_vhost(self, vhost: str) -> None:
        if self._http:
            self._call("DELETE", f"/vhosts/{quote(vhost, safe='')}")
        else:
            self._ctl("delete_vhost", vhost)

    def add_user(self, user: str, password: str) -> None:
        if self._http:
            self._call("PUT", f"/users/{quote(user, safe='')}", {"password": password, "tags": ""})
        else:
            self._ctl("add_user", user, password)

    def delete_user(self, user: str) -> None:
        if self._http:
            self._call("DELETE", f"/users/{quote(user, safe='')}")
        else:
            self._ctl("delete_user", user)

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        p = permissions
        if self._http:
            self._call(
                "PUT",
                f"/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                {"configure": p.configure, "write": p.write, "read": p.read},
            )
        else:
            self._ctl("set_permissions", "-p", vhost, user, p.configure, p.write, p.read)


def url_for(amqp_url: str, vhost: str, user: str | None = None, password: str = "") -> str:
    """`amqp_url`'s host and port on `vhost`, as `user` (or with its own credentials)."""
    parts = urlsplit(amqp_url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))

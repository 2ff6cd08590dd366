"""Masking secrets in URLs, so a password never reaches a log line or the terminal."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_CREDENTIALS_IN_TEXT = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@"
)


def mask_url(url: str) -> str:
    """Return `url` with its password replaced by `***` (user and host stay readable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_text(text: str) -> str:
    """Mask every `scheme://user:password@` found anywhere in free text."""
    return _CREDENTIALS_IN_TEXT.sub(r"\g<scheme>\g<user>:***@", text)


def split_urls(text: str) -> list[str]:
    """The broker URLs in `text`: one URL, or the nodes of one cluster separated by commas.

    Either full URLs (`amqp://u:p@a:5672/,amqp://u:p@b:5672/`) or hosts after a first URL
    (`amqp://u:p@a:5672,b:5672,c:5672/vhost`): a host inherits the first URL's scheme and
    credentials, and the path (vhost) and query written after the last host apply to every
    node that has none. A comma inside a password must be percent-encoded (`%2C`).
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("no broker URL given")
    first = urlsplit(items[0])
    if not first.scheme or "://" not in items[0]:
        raise ValueError(
            f"the first broker address must be a URL (amqp://...), got {mask_text(items[0])!r}"
        )
    userinfo = first.netloc.rpartition("@")[0]
    prefix = f"{first.scheme}://{userinfo + '@' if userinfo else ''}"
    urls = [item if "://" in item else prefix + item for item in items]
    last = urlsplit(urls[-1])
    if "://" not in items[-1] and (last.path or last.query):
        urls = [_with_default_path(url, last.path, last.query) for url in urls]
    return urls


def _with_default_path(url: str, path: str, query: str) -> str:
    parts = urlsplit(url)
    if parts.path or parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def mask_urls(urls: list[str]) -> str:
    """Several broker URLs for display: each masked, separated by commas."""
    return ",".join(mask_url(url) for url in urls)

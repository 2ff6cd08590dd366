"""Masking secrets in URLs, so a password never reaches a log line or the terminal; and the
checks of a broker URL that must fail before connecting (pure, no I/O)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

_CREDENTIALS_IN_TEXT = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@"
)
_PASSWORD_IN_QUERY = re.compile(r"(?P<key>(?:^|&)[^=&]*pass[^=&]*=)[^&]*", re.IGNORECASE)

ENCODING_HINT = (
    "percent-encode reserved characters in the user name and password "
    "(@ as %40, : as %3A, / as %2F, ? as %3F, # as %23)"
)


def mask_url(url: str) -> str:
    """Return `url` with its password replaced by `***` (user and host stay readable).

    A URL that does not parse, or whose password seems to hold an unencoded `@`, `/`, `?`
    or `#` (an `@` after the host part), shows nothing before its last `@`. A password given
    as a query parameter (PostgreSQL's `?password=`) is masked as well.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _mask_all_credentials(url)
    if "@" in parts.path + parts.query + parts.fragment:
        return _mask_all_credentials(url)
    query = _PASSWORD_IN_QUERY.sub(r"\g<key>***", parts.query)
    if parts.password is None:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_all_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return mask_text(url)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def mask_text(text: str) -> str:
    """Mask every `scheme://user:password@` found anywhere in free text."""
    return _CREDENTIALS_IN_TEXT.sub(r"\g<scheme>\g<user>:***@", text)


def broker_url_problem(url: str) -> str | None:
    """What is wrong with an amqp(s) URL before any connection is tried, or None.

    Catches what otherwise surfaces as a traceback from deep inside the URL parser (a
    non-numeric port, a broken IPv6 host) or silently connects somewhere else (an unencoded
    `@`, `/`, `?` or `#` in the password moves the host part).
    """
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"cannot parse the broker URL {shown!r} ({exc}): {ENCODING_HINT}"
    try:
        parts.port  # noqa: B018 - raises for a non-numeric or out-of-range port
    except ValueError:
        return (
            f"the port of the broker URL {shown!r} is not a number from 0 to 65535 "
            f"(a password with a reserved character also looks like this): {ENCODING_HINT}"
        )
    if "@" in parts.path + parts.query + parts.fragment:
        return (
            f"the broker URL {shown!r} has an '@' after its host part, so its host is "
            f"unclear: {ENCODING_HINT}"
        )
    return None


def disables_tls_verification(url: str) -> bool:
    """True for an amqps URL whose `no_verify_ssl` turns certificate checks off.

    aiormq verifies only when the parameter is absent or exactly "0"; any other value
    (1, true, yes, empty) switches verification off. A repeated parameter counts if any of
    its values would: aiormq reads the first, a proxy or another client may read the last.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() != "amqps":
        return False
    values = [
        value
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.strip().lower() == "no_verify_ssl"
    ]
    return any(value != "0" for value in values)


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

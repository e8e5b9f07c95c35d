"""What stands between a request and the pages: the Host check, the token, the security headers.

:class:`Guard` is an ASGI middleware, outermost, so every response passes it:

- **Host header** (DNS rebinding): a page at ``evil.example`` whose name is
  made to resolve to 127.0.0.1 reaches this server with ``Host:
  evil.example``; only the loopback names, IP literals (which no rebinding can
  use), the ``--host`` given and this machine's own names are answered.
- **Token**: when the server listens beyond the loopback interface, every
  request must carry the token printed at start, once in the URL
  (``?token=...``, then kept in an HttpOnly, SameSite=Strict cookie and
  dropped from the address bar by a redirect) or in that cookie.
- **Headers**: a Content-Security-Policy that allows scripts, styles and
  fetches from this server only and images from it or ``data:`` URLs (no
  inline script, no other origin, no framing), ``nosniff``, no referrer (the
  token never leaks in one), and no caching of pages that show live state.

The release forms carry a CSRF token (:func:`csrf_ok`), checked with the
``Origin`` and ``Sec-Fetch-Site`` headers a browser sends.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

__all__ = ["CSP", "LOOPBACK_NAMES", "SECURITY_HEADERS", "Guard", "Keys", "allowed_host_names", "csrf_ok"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Keys:
    """The secrets of one server: the access token (``None`` on loopback) and the CSRF token."""

    token: str | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cookie: str = "codemode_store_token"

    @classmethod
    def make(cls, *, with_token: bool, port: int) -> Keys:
        """Return new random keys; ``with_token`` for a server reachable beyond loopback."""
        token = secrets.token_urlsafe(32) if with_token else None
        # Cookies ignore ports: one name per port keeps two servers of one machine apart.
        return cls(token=token, cookie=f"codemode_store_token_{port}")


def allowed_host_names(host: str | None) -> frozenset[str]:
    """Return the names a ``Host`` header may carry: loopback, the ``--host`` given, this machine's."""
    names = set(LOOPBACK_NAMES)
    if host is not None:
        names.add(host.lower().strip("[]"))
        names.update(name.lower() for name in (socket.gethostname(), socket.getfqdn()) if name)
    return frozenset(names)


def _host_name(value: str) -> str:
    """Return the name of a Host header value without its port (IPv6 literals unbracketed)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(value: str | None, names: Iterable[str]) -> bool:
    """Tell whether a ``Host`` header value names this server (not a rebound name)."""
    if not value:
        return False
    name = _host_name(value)
    return name in names or _is_ip_literal(name)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def csrf_ok(keys: Keys, given: str | None, headers: dict[str, str]) -> bool:
    """Tell whether a form post carries this server's CSRF token and came from its own pages."""
    if given is None or not hmac.compare_digest(given.encode(), keys.csrf.encode()):
        return False
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    # "null": the pages' own Referrer-Policy (no-referrer) makes a browser send Origin: null
    # even for a same-origin post; Sec-Fetch-Site above still tells a cross-site one.
    return (
        origin is None
        or origin == "null"
        or _host_name(origin.split("://", 1)[-1]) == _host_name(headers.get("host", ""))
    )


class Guard:
    """The ASGI middleware that checks the Host header and the token, and adds the security headers."""

    def __init__(self, app: ASGIApp, *, keys: Keys, host_names: frozenset[str]) -> None:
        """Wrap ``app``; answer only ``Host`` headers in ``host_names`` (or IP literals)."""
        self.app = app
        self.keys = keys
        self.host_names = host_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request with a foreign Host or without the token; add headers to every response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k not in dict(SECURITY_HEADERS)]
                message["headers"] = [*kept, *SECURITY_HEADERS]
            await send(message)

        if not host_allowed(_header(scope, b"host"), self.host_names):
            await _plain(send_with_headers, 400, "refused: this server does not answer to that Host header")
            return
        if self.keys.token is not None and not await self._token_ok(scope, send_with_headers):
            return
        await self.app(scope, receive, send_with_headers)

    async def _token_ok(self, scope: Scope, send: Send) -> bool:
        token = self.keys.token
        assert token is not None
        query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            # Keep it in a cookie and take it out of the address bar (and of any link copied from there).
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = quote(scope.get("path", "/")) + (f"?{rest}" if rest else "")
            cookie = f"{self.keys.cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return False
        cookies = SimpleCookie()
        try:
            cookies.load(_header(scope, b"cookie") or "")
        except Exception:
            cookies = SimpleCookie()
        held = cookies.get(self.keys.cookie)
        if held is not None and hmac.compare_digest(held.value.encode(), token.encode()):
            return True
        await _plain(send, 403, "refused: open the URL with the token that `codemode-store serve` printed")
        return False


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Start the page: open the store, bind the socket, print the URL, serve until interrupted."""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable

import uvicorn

from ..cli_support.admin import shown
from ..cli_support.errors import CannotListen
from ..engine import to_url
from .app import Settings, create_app
from .guard import Keys, allowed_host_names
from .opening import open_for_page

__all__ = ["DEFAULT_PORT", "LOOPBACK", "bind", "page_url", "serve", "settings_for"]

DEFAULT_PORT = 8765
LOOPBACK = "127.0.0.1"


def bind(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on ``host``:``port`` (port 0: any free one); ``CannotListen`` if not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def page_url(host: str, port: int, token: str | None) -> str:
    """Return the URL a person opens (with the token, when there is one)."""
    name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104  # naming, not binding
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/" + (f"?token={token}" if token else "")


def settings_for(target: str, *, command: str, host: str | None, port: int, allow_release: bool) -> Settings:
    """Return the settings of a server of the store at ``target`` on ``host`` (``None``: loopback)."""
    # The store as given, not the read-only URL it was opened with.
    database = shown(to_url(target))
    return Settings(
        database=database,
        command=(*shlex.split(command), "--db", database),
        allow_release=allow_release,
        keys=Keys.make(with_token=host is not None, port=port),
        host_names=allowed_host_names(host),
    )


def serve(
    target: str,
    *,
    port: int,
    host: str | None,
    allow_release: bool,
    echo: Callable[[str], None],
    command: str = "codemode-store",
) -> None:
    """Serve the store at ``target`` until interrupted; ``host`` ``None`` binds loopback only."""
    store = open_for_page(target, writable=allow_release)
    try:
        sock = bind(host or LOOPBACK, port)
        with sock:
            bound_port = sock.getsockname()[1]
            settings = settings_for(
                target, command=command, host=host, port=bound_port, allow_release=allow_release
            )
            mode = "releases allowed" if allow_release else "read-only"
            echo(f"serving {settings.database} ({mode}) at:")
            echo(f"  {page_url(host or LOOPBACK, bound_port, settings.keys.token)}")
            if settings.keys.token is not None:
                echo("the token in this URL is shown once: anyone with it can read the store")
            echo("press Ctrl+C to stop")
            config = uvicorn.Config(
                create_app(store, settings), log_level="warning", access_log=False, lifespan="off"
            )
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()

"""The web application: routes, templates and JSON twins, over one open store.

Every page has a JSON twin at the same path with ``.json`` (the CLI's JSON
keys: the rows ``--format json`` prints, the next page in a ``Link`` header)
and names the CLI command that shows the same. The store is read in
Starlette's thread pool (the store is synchronous); forms that change the
store exist only with ``allow_release`` and carry the CSRF token.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..cli_support import display, inspection
from ..cli_support.errors import NoOutcome, StoreNotFound
from ..errors import DatabaseError, FutureGeneration, InvalidInput, StoreError, UnknownCell
from ..store import ObservationStore
from ..wire import TextItem
from . import pages
from .guard import Guard, Keys, csrf_ok
from .text import marked

__all__ = ["Settings", "create_app"]

HERE = Path(__file__).parent
READ_ONLY_MESSAGE = (
    "this page is read-only: start it with `codemode-store serve --allow-release` to release or end sessions"
)
#: Seconds between two refreshes of a page that shows live state.
REFRESH_SECONDS = 2


@dataclass(frozen=True)
class Settings:
    """How a server runs: the database shown, the CLI prefix of its commands, what it allows."""

    database: str
    command: tuple[str, ...]
    allow_release: bool
    keys: Keys
    host_names: frozenset[str]
    refresh_seconds: int = REFRESH_SECONDS


def _url(path: str, params: Mapping[str, str | int | None]) -> str:
    kept = {key: str(value) for key, value in params.items() if value is not None and value != ""}
    return path + ("?" + urlencode(kept) if kept else "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shown"] = marked
    env.filters["time"] = display.format_time
    env.filters["count"] = lambda value: "-" if value is None else f"{value:,}"
    env.globals["url"] = _url
    return env


class Pages:
    """The endpoints of one server over one store."""

    def __init__(self, store: ObservationStore, settings: Settings) -> None:
        """Serve ``store`` as ``settings`` say."""
        self.store = store
        self.settings = settings
        self.env = _environment()

    # -- responses ---------------------------------------------------------------------

    def html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render a template with the values every page shows."""
        context.setdefault("refresh", self.settings.refresh_seconds)
        context.setdefault("json_url", None)
        context.setdefault("command", None)
        body = self.env.get_template(template).render(
            database=self.settings.database,
            allow_release=self.settings.allow_release,
            csrf=self.settings.keys.csrf,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def command(self, *words: str) -> pages.Command:
        """Return the CLI command that shows what a page shows."""
        return pages.Command((*self.settings.command, *words))

    def error(self, request: Request, exc: StoreError) -> Response:
        """Return the page (or JSON) of a store error, with a status that says what kind it is."""
        if isinstance(exc, InvalidInput):
            status = 400
        elif isinstance(exc, (UnknownCell, FutureGeneration, StoreNotFound)):
            status = 404
        elif isinstance(exc, DatabaseError):
            status = 503
        else:
            status = 409
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return self.html("error.html", status, title="error", message=str(exc), refresh=0)

    # -- pages ----------------------------------------------------------------------------

    def sessions(self, request: Request) -> Response:
        """The sessions, a page at a time."""
        q = request.query_params
        limit = pages.limit_param(q)
        listing = pages.sessions_page(self.store, after=pages.text_param(q, "after"), limit=limit)
        if request.url.path.endswith(".json"):
            return _json_rows(listing, request)
        return self.html(
            "sessions.html",
            title="sessions",
            listing=listing,
            hosts=pages.hosts_page(self.store, limit=pages.HOSTS_SHOWN),
            hosts_command=self.command("hosts"),
            limit=limit,
            first=pages.text_param(q, "after") is not None,
            done=q.get("done"),
            json_url=_url("/sessions.json", dict(q)),
            command=self.command("sessions"),
        )

    def hosts(self, request: Request) -> Response:
        """The host ids the store has seen (the JSON twin of the sessions page's hosts)."""
        listing = pages.hosts_page(self.store, limit=pages.limit_param(request.query_params))
        return _json_rows(listing, request)

    def cells(self, request: Request) -> Response:
        """The cells of one session (or of all), filtered by state as the CLI's ``cells``."""
        q = request.query_params
        limit = pages.limit_param(q)
        session_id = pages.text_param(q, "session")
        state = pages.text_param(q, "state")
        status = pages.text_param(q, "status")
        if status not in (None, "open", "closed"):
            raise InvalidInput(f"status must be open or closed, not {status!r}")
        after_session, after_cell = pages.text_param(q, "after_session"), pages.text_param(q, "after_cell")
        after = (after_session, after_cell) if after_session is not None and after_cell is not None else None
        listing = pages.cells_page(
            self.store,
            session_id=session_id,
            state=state,
            closed=None if status is None else status == "closed",
            after=after,
            limit=limit,
        )
        if request.url.path.endswith(".json"):
            return _json_rows(listing, request)
        words = ["cells"]
        if session_id is not None:
            words += ["--session", session_id]
        if state is not None:
            words += ["--state", state]
        if status is not None:
            words.append(f"--{status}")
        return self.html(
            "cells.html",
            title=f"cells of {display.escape(session_id)}" if session_id else "cells",
            listing=listing,
            session_id=session_id,
            state=state,
            status_filter=status,
            states=inspection.CELL_STATES,
            limit=limit,
            first=after is not None,
            json_url=_url("/cells.json", dict(q)),
            command=self.command(*words),
        )

    def history(self, request: Request) -> Response:
        """A cell's generations as a timeline."""
        q = request.query_params
        session_id, cell_id = pages.cell_params(q)
        limit = pages.limit_param(q)
        after = pages.number_param(q, "after")
        listing = pages.history_page(self.store, session_id, cell_id, after=after, limit=limit)
        if request.url.path.endswith(".json"):
            return _json_rows(listing, request, lambda entry: entry.observation)
        return self.html(
            "history.html",
            title=f"history of {display.escape(cell_id)}",
            listing=listing,
            session_id=session_id,
            cell_id=cell_id,
            limit=limit,
            first=after is not None,
            json_url=_url("/history.json", dict(q)),
            command=self.command("history", session_id, cell_id),
        )

    def observation(self, request: Request) -> Response:
        """One generation: its text and images, its error text, or its tombstone."""
        q = request.query_params
        session_id, cell_id = pages.cell_params(q)
        generation = pages.number_param(q, "gen")
        start = pages.number_param(q, "from") or 0
        view = pages.observation_view(self.store, session_id, cell_id, generation, start=start)
        found = view.observation
        if request.url.path.endswith(".json"):
            return JSONResponse(pages.record_with_outcome(found))
        return self.html(
            "observation.html",
            title=f"{display.escape(cell_id)} generation {found.generation}",
            view=view,
            o=found,
            session_id=session_id,
            cell_id=cell_id,
            done=q.get("done"),
            # Only a pending generation changes by itself; a large payload is not fetched again and again.
            refresh=self.settings.refresh_seconds if found.state == "pending" else 0,
            json_url=_url(
                "/observation.json", {"session": session_id, "cell": cell_id, "gen": found.generation}
            ),
            command=self.command("show", session_id, cell_id, str(found.generation)),
        )

    def text(self, request: Request) -> Response:
        """One text item whole, as plain text (the page folds long text)."""
        q = request.query_params
        session_id, cell_id = pages.cell_params(q)
        generation = pages.number_param(q, "gen")
        number = pages.number_param(q, "item", low=1) or 1
        found = inspection.observation(self.store, session_id, cell_id, generation)
        if found.outcome is None:
            text = found.error_text
            if text is None:
                raise NoOutcome(
                    f"the generation is {found.state}: it holds no text",
                    session_id=session_id,
                    cell_id=cell_id,
                    generation=found.generation,
                )
        else:
            items = found.outcome.content_items
            item = items[number - 1] if number <= len(items) else None
            if not isinstance(item, TextItem):
                raise InvalidInput(
                    f"item {number} is not a text item",
                    session_id=session_id,
                    cell_id=cell_id,
                    generation=found.generation,
                )
            text = item.text
        return PlainTextResponse(text, headers={"content-disposition": "inline"})

    # -- changes (only with allow_release) ----------------------------------------------------------

    def _allowed(self) -> None:
        if not self.settings.allow_release:
            raise Forbidden()

    def confirm_release(self, request: Request) -> Response:
        """Ask before releasing a generation."""
        self._allowed()
        q = request.query_params
        session_id, cell_id = pages.cell_params(q)
        generation = pages.number_param(q, "gen")
        if generation is None:
            raise InvalidInput("the page needs the query parameter 'gen'")
        found = inspection.observation(self.store, session_id, cell_id, generation)
        return self.html(
            "confirm.html",
            title="release?",
            refresh=0,
            action="release",
            o=found,
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
            back=_url("/observation", {"session": session_id, "cell": cell_id, "gen": generation}),
            command=self.command("release", session_id, cell_id, str(generation)),
        )

    def confirm_end_session(self, request: Request) -> Response:
        """Ask before ending (purging) a session."""
        self._allowed()
        session_id = pages.text_param(request.query_params, "session", required=True)
        assert session_id is not None
        found = list(inspection.iter_cells(self.store, session_id=session_id, limit=pages.MAX_ROWS + 1))
        if not found:
            raise StoreNotFound(f"session {display.quoted(session_id)}: no such session in the store")
        return self.html(
            "confirm.html",
            title="end session?",
            refresh=0,
            action="end-session",
            o=None,
            session_id=session_id,
            cell_id=None,
            generation=None,
            cells=len(found),
            many=len(found) > pages.MAX_ROWS,
            back=_url("/cells", {"session": session_id}),
            command=self.command("end-session", session_id),
        )

    async def change(self, request: Request) -> Response:
        """Carry out a confirmed release or end of session (a form post with the CSRF token)."""
        self._allowed()
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            raise InvalidInput("a change is a form post")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if not csrf_ok(self.settings.keys, form.get("csrf"), dict(request.headers)):
            return self.html(
                "error.html",
                403,
                title="refused",
                message="refused: the form's CSRF token is missing or wrong; reload the page and try again",
                refresh=0,
            )
        q = request.query_params
        session_id = pages.text_param(q, "session", required=True)
        assert session_id is not None
        if request.url.path == "/end-session":
            deleted = await run_in_threadpool(self.store.end_session, session_id)
            return RedirectResponse(_url("/", {"done": "ended", "deleted": deleted}), status_code=303)
        cell_id = pages.text_param(q, "cell", required=True)
        generation = pages.number_param(q, "gen")
        assert cell_id is not None
        if generation is None:
            raise InvalidInput("the form needs the generation")
        handle = self.store.session(session_id)
        dropped = await run_in_threadpool(handle.release, cell_id, generation)
        done = "released" if dropped else "already-released"
        return RedirectResponse(
            _url("/observation", {"session": session_id, "cell": cell_id, "gen": generation, "done": done}),
            status_code=303,
        )


class Forbidden(Exception):
    """A change asked of a server started without ``--allow-release``."""


def _json_rows(
    listing: pages.Listing[Any], request: Request, value: Callable[[Any], Any] = lambda row: row
) -> Response:
    body = json.dumps([inspection.record(value(row)) for row in listing.rows], indent=2)
    headers = {}
    if listing.next_params is not None:
        params = {
            k: v for k, v in request.query_params.items() if k not in ("after", "after_session", "after_cell")
        }
        headers["link"] = f'<{_url(request.url.path, {**params, **listing.next_params})}>; rel="next"'
    return Response(body + "\n", media_type="application/json", headers=headers)


def create_app(store: ObservationStore, settings: Settings) -> Guard:
    """Return the ASGI application serving ``store``, behind its :class:`Guard`."""
    p = Pages(store, settings)

    def guarded(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                if inspect.iscoroutinefunction(endpoint):
                    response: Response = await endpoint(request)
                else:
                    response = await run_in_threadpool(endpoint, request)
            except Forbidden:
                return p.html(
                    "error.html",
                    403,
                    title="read-only",
                    message=READ_ONLY_MESSAGE,
                    refresh=0,
                )
            except StoreError as exc:
                return p.error(request, exc)
            return response

        return run

    routes = [
        Route("/", guarded(p.sessions)),
        Route("/sessions.json", guarded(p.sessions)),
        Route("/hosts.json", guarded(p.hosts)),
        Route("/cells", guarded(p.cells)),
        Route("/cells.json", guarded(p.cells)),
        Route("/history", guarded(p.history)),
        Route("/history.json", guarded(p.history)),
        Route("/observation", guarded(p.observation)),
        Route("/observation.json", guarded(p.observation)),
        Route("/text", guarded(p.text)),
        Route("/release", guarded(p.confirm_release), methods=["GET"]),
        Route("/release", guarded(p.change), methods=["POST"]),
        Route("/end-session", guarded(p.confirm_end_session), methods=["GET"]),
        Route("/end-session", guarded(p.change), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, keys=settings.keys, host_names=settings.host_names)

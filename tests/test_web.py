"""``codemode-store serve``: the pages, their JSON twins, keyset pages, and the safety cases, over HTTP.

The servers are real ``codemode-store serve`` processes (started once for the
module), asked with ``http.client`` so that a test can send any ``Host`` or
``Origin`` header. The browser's view is in tests/test_web_browser.py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import event
from support.cli_runner import cli
from support.hostile import (
    CASES,
    HEAVY,
    HOSTED,
    HOSTILE_CELL,
    HOSTILE_HOST,
    HOSTILE_SESSION,
    SCRIPT,
    SESSION,
    TEXT_MIB,
    hostile_store,
)

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import DatabaseError
from scripts.screenshot import ROOT, Server

pytest.importorskip("starlette", reason="the web extra is not installed (pip install '.[web]')")

from codemode_store.web import guard, pages
from codemode_store.web.opening import open_for_page

SESSIONS = 120
GENERATIONS = 25


def fill_listing_store(path: Path) -> None:
    """Add sessions s-000..s-119 (one cell each) and a cell with 25 generations."""
    with ObservationStore.open(path, durability="normal") as store:
        for index in range(SESSIONS):
            store.session(f"s-{index:03d}").create_cell("c")
        s = store.session("s-000")
        s.create_cell("long")
        for generation in range(GENERATIONS):
            s.begin("long", generation, {"n": generation})
            s.record("long", generation, Outcome.yielded([TextItem(f"step {generation}")]))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's store: the hostile corpus (heavy cases included) and the listing sessions."""
    path = tmp_path_factory.mktemp("web") / "store.db"
    hostile_store(path)
    fill_listing_store(path)
    return path


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[Server]:
    """A read-only server on loopback (the default)."""
    with Server(db) as running:
        yield running


@pytest.fixture(scope="module")
def releasing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server with --allow-release over a small store of its own."""
    path = tmp_path_factory.mktemp("release") / "store.db"
    hostile_store(path, heavy=False)
    with Server(path, "--allow-release") as running:
        yield running, path


class Reply:
    """An HTTP response: status, headers (lower-case names), body text."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.raw)


def request(
    server: Server,
    path: str,
    *,
    method: str = "GET",
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> Reply:
    """Send one request to ``server``; ``host`` replaces the Host header."""
    address = urlsplit(server.base)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        sent = dict(headers or {})
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else address.netloc)
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            sent["Content-Length"] = str(len(body.encode()))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(body.encode() if body is not None else None)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes, as a browser's parser reads them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str) -> None:
    """Assert a page holds no script but the page's own file, no event attribute, no foreign URL."""
    tags = Tags(html).tags
    assert [attrs for tag, attrs in tags if tag == "script"] == [{"src": "/static/web.js", "defer": None}]
    for tag, attrs in tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert tag not in ("svg", "iframe", "object", "embed", "textarea", "base", "meta") or (
            tag == "meta" and set(attrs) <= {"charset", "name", "content"}
        ), tag
        for name in ("href", "src", "action"):
            value = attrs.get(name) or ""
            if tag == "img" and name == "src":
                assert re.fullmatch(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+", value), value
            elif tag == "link" and value == "data:,":
                pass
            elif value:
                assert value.startswith(("/", "?")), (tag, name, value)


def page(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return path + (f"?{query}" if query else "")


# -- the command ----------------------------------------------------------------------------


def test_serve_listens_on_loopback_only_by_default(server: Server) -> None:
    port = urlsplit(server.base).port
    assert server.base == f"http://127.0.0.1:{port}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing else
    assert "read-only" in "\n".join(server.printed)
    assert not any("token" in line for line in server.printed)


def test_serve_without_the_web_extra_says_how_to_install_it_in_one_line(tmp_path: Path) -> None:
    code = "import sys; sys.modules['starlette'] = None; from codemode_store.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "--db", str(tmp_path / "x.db"), "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "pip install 'codemode-store[web]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_one_error_line(server: Server, db: Path) -> None:
    port = str(urlsplit(server.base).port)
    done = cli(["--db", str(db), "serve", "--port", port], code=1)
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_a_postgresql_store_is_served_read_only(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url) as store:
        s = store.session("pg-session")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.completed([TextItem("from PostgreSQL")]))
    with Server(postgres_url) as server:
        assert "read-only" in "\n".join(server.printed) and "***" in "\n".join(server.printed)
        html = request(server, page("/observation", session="pg-session", cell="c")).text
        assert "from PostgreSQL" in html
        assert request(server, "/sessions.json").json()[0]["session_id"] == "pg-session"


def test_the_base_install_never_imports_the_web_stack() -> None:
    code = (
        "import sys\n"
        "import codemode_store, codemode_store.cli\n"
        "from codemode_store.cli_support import demo, display, inspection\n"
        "try:\n"
        "    codemode_store.cli.main(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'jinja2')"
        " or m.startswith('codemode_store.web')]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_demo_ends_by_saying_how_to_open_the_page(tmp_path: Path) -> None:
    out = cli(["demo", "--db", str(tmp_path / "demo.db")]).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("In a web browser (open the URL it prints): ")
    assert last.endswith(f"--db {tmp_path / 'demo.db'} serve")


# -- pages and their twins -----------------------------------------------------------------


def test_every_page_names_its_json_twin_and_its_cli_command(server: Server, db: Path) -> None:
    pages_and_commands = {
        page("/"): "sessions",
        page("/cells", session=SESSION, state="retained"): f"cells --session {SESSION} --state retained",
        page("/cells", session=SESSION, status="closed"): f"cells --session {SESSION} --closed",
        page("/history", session="s-000", cell="long"): "history s-000 long",
        page("/observation", session="s-000", cell="long", gen=3): "show s-000 long 3",
    }
    for path, command in pages_and_commands.items():
        reply = request(server, path)
        assert reply.status == 200, (path, reply.text)
        assert f"--db {db} {command}</code>" in reply.text, path
        twin = re.search(r'<a class="json" href="([^"]+)"', reply.text)
        assert twin is not None, path
        assert request(server, twin.group(1).replace("&amp;", "&")).status == 200


def _cli_json(db: Path, *words: str) -> Any:
    return json.loads(cli(["--db", str(db), *words, "--json"]).stdout)


def test_the_json_twins_hold_the_cli_records(server: Server, db: Path) -> None:
    assert request(server, "/sessions.json").json() == _cli_json(db, "sessions", "--limit", "50")
    cells = request(server, page("/cells.json", session=SESSION, state="retained")).json()
    assert cells == _cli_json(db, "cells", "--session", SESSION, "--state", "retained")
    history = request(server, page("/history.json", session="s-000", cell="long")).json()
    assert history == _cli_json(db, "history", "s-000", "long")
    last = GENERATIONS - 1  # retained: the earlier ones were acknowledged by the next begin
    one = request(server, page("/observation.json", session="s-000", cell="long", gen=last)).json()
    assert {k: v for k, v in one.items() if k != "outcome"} == history[last]
    assert one["outcome"] == _cli_json(db, "show", "s-000", "long", str(last))
    tombstone = request(server, page("/observation.json", session="s-000", cell="long", gen=0)).json()
    assert tombstone["state"] == "released" and tombstone["outcome"] is None


def _follow(server: Server, path: str) -> tuple[list[Any], int]:
    rows: list[Any] = []
    pages_read = 0
    next_path: str | None = path
    while next_path is not None:
        reply = request(server, next_path)
        assert reply.status == 200, reply.text
        rows += reply.json()
        pages_read += 1
        link = reply.headers.get("link")
        next_path = None if link is None else re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1)  # type: ignore[union-attr]
    return rows, pages_read


def test_keyset_pages_walk_every_row_once(server: Server, db: Path) -> None:
    sessions, count = _follow(server, "/sessions.json?limit=50")
    assert sessions == _cli_json(db, "sessions") and count == 3
    cells, count = _follow(server, "/cells.json?limit=7")
    assert cells == _cli_json(db, "cells") and count == -(-len(cells) // 7)
    history, count = _follow(server, page("/history.json", session="s-000", cell="long", limit=10))
    assert [o["generation"] for o in history] == list(range(GENERATIONS)) and count == 3


def test_the_html_pages_link_the_next_page(server: Server, db: Path) -> None:
    seen: list[str] = []
    path: str | None = "/"
    while path is not None:
        html = request(server, path).text
        seen += re.findall(r'<td><a href="/cells\?session=([^"]+)"', html)
        assert ("first page" in html) == (path != "/")
        link = re.search(r'<a rel="next" href="([^"]+)"', html)
        path = None if link is None else link.group(1).replace("&amp;", "&")
    assert len(seen) == len(set(seen)) == len(_cli_json(db, "sessions")) == SESSIONS + 3


def test_a_page_reads_no_offset_and_counts_no_whole_table(db: Path) -> None:
    statements: list[str] = []
    offsets: list[Any] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append(statement)
        if re.search(r"OFFSET \?\s*$", statement):
            offsets.append(parameters[-1])  # SQLAlchemy's SQLite LIMIT always adds OFFSET 0

    store = open_for_page(str(db), writable=False)
    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        listing = pages.sessions_page(store, after="s-050", limit=10)
        pages.cells_page(store, session_id=None, state=None, closed=None, after=("s-050", "c"), limit=10)
        pages.history_page(store, "s-000", "long", after=10, limit=10)
    finally:
        store.close()
    assert [s.session_id for s in listing.rows] == [f"s-{i:03d}" for i in range(51, 61)]
    assert statements and set(offsets) <= {0}
    for sql in statements:  # every count is of one session's or one cell's rows
        for match in re.finditer(
            r"count\(\*\)\s+FROM\s+observations(.{0,80})", sql, re.IGNORECASE | re.DOTALL
        ):
            assert "WHERE" in match.group(1).upper(), sql


def test_an_unknown_cell_is_a_404_page_that_names_it(server: Server) -> None:
    reply = request(server, page("/history", session="s-000", cell="nope"))
    assert reply.status == 404 and "nope" in reply.text
    assert request(server, page("/history.json", session="s-000", cell="nope")).json()["error"]
    assert request(server, page("/observation", session="s-000", cell="long", gen="x")).status == 400


# -- safety -------------------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(server: Server) -> None:
    port = urlsplit(server.base).port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", ""):
        assert request(server, "/", host=host).status == 400, host
        assert request(server, "/sessions.json", host=host).status == 400, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert request(server, "/", host=host).status == 200, host


def test_every_response_carries_the_content_security_policy(server: Server) -> None:
    for path in (
        "/",
        "/sessions.json",
        "/static/web.css",
        "/static/web.js",
        "/nowhere",
        "/history?session=x",
    ):
        reply = request(server, path)
        assert reply.headers["content-security-policy"] == guard.CSP, path
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self';" in guard.CSP and "img-src 'self' data:;" in guard.CSP
    assert "unsafe-inline" not in guard.CSP and "default-src 'none'" in guard.CSP
    assert request(server, "/nowhere", host="evil.example").headers["content-security-policy"] == guard.CSP


def test_no_page_has_an_inline_script_or_a_foreign_asset(server: Server) -> None:
    for path in (
        "/",
        page("/cells", session=SESSION),
        page("/observation", session=SESSION, cell="script-tag"),
    ):
        assert_inert(request(server, path).text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_payload_is_shown_as_text(server: Server, case: str) -> None:
    html = request(server, page("/observation", session=SESSION, cell=case)).text
    _outcome, raw = CASES[case]
    for markup in raw:
        assert markup not in html, (case, markup)
    assert_inert(html)


def test_hostile_ids_are_escaped_everywhere(server: Server) -> None:
    paths = [
        "/",
        page("/cells", session=HOSTILE_SESSION),
        page("/history", session=HOSTILE_SESSION, cell=HOSTILE_CELL),
        page("/observation", session=HOSTILE_SESSION, cell=HOSTILE_CELL),
    ]
    for path in paths:
        reply = request(server, path)
        assert reply.status == 200, path
        assert SCRIPT not in reply.text and '"><img' not in reply.text
        assert "\u202e" not in reply.text and "\u2066" not in reply.text
        assert "&lt;script&gt;" in reply.text
        assert_inert(reply.text)


def test_the_sessions_page_lists_the_hosts(server: Server, db: Path) -> None:
    html = request(server, "/").text
    assert '<h2 id="hosts">Hosts</h2>' in html
    assert f"--db {db} hosts</code>" in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html.split('id="hosts"', 1)[1]
    assert HOSTILE_HOST not in html
    assert_inert(html)
    assert request(server, "/hosts.json").json() == _cli_json(db, "hosts")
    (host,) = request(server, "/hosts.json").json()
    assert host["host_id"] == HOSTILE_HOST and host["pending"] == 1 and host["live"] is False
    timeline = request(server, page("/history", session=HOSTED, cell="c")).text
    assert 'host <span class="id">&lt;script&gt;' in timeline
    assert_inert(timeline)


def test_control_characters_are_shown_escaped(server: Server) -> None:
    html = request(server, page("/observation", session=SESSION, cell="nul-and-bidi")).text
    for shown in (r"\x00", r"\u202e", r"\u2066", r"\x1b", r"\x07", r"\r"):
        assert f'<span class="ctl">{shown}</span>' in html
    assert "\x00" not in html and "\x1b" not in html


def test_a_failure_text_is_escaped(server: Server) -> None:
    html = request(server, page("/observation", session=SESSION, cell="failed")).text
    assert "Traceback: &lt;script&gt;" in html and SCRIPT not in html


@pytest.mark.slow
def test_64_mib_of_text_is_folded_and_whole_a_link_away(server: Server) -> None:
    reply = request(server, page("/observation", session=SESSION, cell=HEAVY[0]))
    assert reply.status == 200
    assert len(reply.raw) < 1024 * 1024
    assert "more characters not shown here" in reply.text and SCRIPT not in reply.text
    whole = request(server, page("/text", session=SESSION, cell=HEAVY[0], gen=0, item=1))
    assert whole.headers["content-type"].startswith("text/plain")
    assert len(whole.raw) == TEXT_MIB * 1024 * 1024


@pytest.mark.slow
def test_10000_images_come_50_a_page(server: Server) -> None:
    html = request(server, page("/observation", session=SESSION, cell=HEAVY[1])).text
    assert html.count('<img class="payload"') == pages.ITEMS_PER_PAGE
    assert "Content: 10,000 items" in html
    last = request(server, page("/observation", session=SESSION, cell=HEAVY[1], gen=0, **{"from": 9950})).text
    assert last.count('<img class="payload"') == 50 and 'rel="next"' not in last


def test_a_token_guards_a_server_given_a_host(db: Path) -> None:
    with Server(db, "--host", "127.0.0.1") as server:
        token = server.url.split("?token=", 1)[1]
        assert len(token) >= 40
        assert sum(token in line for line in server.printed) == 1  # printed once
        assert request(server, "/").status == 403
        assert request(server, "/sessions.json").status == 403
        assert request(server, "/?token=wrong").status == 403
        entry = request(server, f"/cells?session=s-001&token={token}")
        assert entry.status == 303 and entry.headers["location"] == "/cells?session=s-001"
        cookie = entry.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert request(server, "/", headers={"Cookie": cookie.split(";")[0]}).status == 200
        assert request(server, "/", headers={"Cookie": cookie.split(";")[0] + "x"}).status == 403
        assert (
            request(server, "/", host="evil.example", headers={"Cookie": cookie.split(";")[0]}).status == 400
        )


# -- read-only, and releases ----------------------------------------------------------------------


def test_without_allow_release_nothing_can_be_changed(server: Server, db: Path) -> None:
    before = _cli_json(db, "history", SESSION, "script-tag")
    where = page("/release", session=SESSION, cell="script-tag", gen=0)
    assert request(server, where).status == 403
    assert "Release…" not in request(server, page("/observation", session=SESSION, cell="script-tag")).text
    assert "End session" not in request(server, page("/cells", session=SESSION)).text
    assert request(server, where, method="POST", body="csrf=x").status == 403
    assert request(server, page("/end-session", session=SESSION), method="POST", body="csrf=x").status == 403
    assert _cli_json(db, "history", SESSION, "script-tag") == before


def test_the_read_only_store_refuses_writes(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        store.session("t").create_cell("c")
    if "://" not in store_url:
        store_url = str(Path(store_url).resolve())
    ro = open_for_page(store_url, writable=False)
    try:
        assert [c.cell_id for c in ro.cells("t")] == ["c"]
        with pytest.raises(DatabaseError):
            ro.session("t").create_cell("d")
        with pytest.raises(DatabaseError):
            ro.end_session("t")
    finally:
        ro.close()
    with ObservationStore.open(store_url) as store:
        assert [c.cell_id for c in store.cells("t")] == ["c"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_release_needs_the_csrf_token_and_a_same_origin_post(releasing: tuple[Server, Path]) -> None:
    server, path = releasing
    where = page("/release", session=SESSION, cell="script-tag", gen=0)
    confirm = request(server, where)
    assert confirm.status == 200 and "Release generation 0" in confirm.text
    csrf = _csrf(confirm.text)
    assert request(server, where, method="POST", body="csrf=wrong").status == 403
    assert request(server, where, method="POST", body="").status == 403
    cross = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert request(server, where, method="POST", body=f"csrf={csrf}", headers=cross).status == 403
    assert _cli_json(path, "history", SESSION, "script-tag")[0]["state"] == "retained"
    same = {"Origin": server.base, "Sec-Fetch-Site": "same-origin"}
    done = request(server, where, method="POST", body=f"csrf={csrf}", headers=same)
    assert done.status == 303 and "done=released" in done.headers["location"]
    assert _cli_json(path, "history", SESSION, "script-tag")[0]["state"] == "released"
    refused = request(
        server, page("/release", session=SESSION, cell="failed", gen=0), method="POST", body=f"csrf={csrf}"
    )
    assert refused.status == 409 and "NotReleasable" not in refused.text and "failed" in refused.text


def test_end_session_asks_then_purges(releasing: tuple[Server, Path]) -> None:
    server, path = releasing
    where = page("/end-session", session=HOSTILE_SESSION)
    confirm = request(server, where)
    assert confirm.status == 200 and "End session" in confirm.text and SCRIPT not in confirm.text
    done = request(server, where, method="POST", body=f"csrf={_csrf(confirm.text)}")
    assert done.status == 303
    assert HOSTILE_SESSION not in [s["session_id"] for s in _cli_json(path, "sessions")]


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_browser_fails_the_browser_tests_under_ci_and_skips_them_otherwise(
    tmp_path: Path, ci: str
) -> None:
    (tmp_path / "no_browser.py").write_text(
        "import scripts.screenshot\nscripts.screenshot.CHROMIUM = '/nonexistent/chromium'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(CI=ci, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_web_browser.py",
            "-p",
            "no_browser",
            "-q",
            "-k",
            "drawn",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ci:
        assert done.returncode == 1, done.stdout
        assert "CI=true but the browser tests cannot run: /nonexistent/chromium is missing" in done.stdout
    else:
        assert done.returncode == 0, done.stdout
        assert "1 skipped" in done.stdout

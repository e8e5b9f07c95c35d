"""The web page in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver.

Through the demo's store (plus a session whose chart is still retained, and the
hostile corpus): pages load without a console error, an image payload is
drawn, the hostile corpus runs no script, the release button exists and works
only with ``--allow-release``, and a refresh keeps the scroll place.
Screenshots of each page go to the test's temporary folder. Without the
browser the module skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.hostile import CASES, HEAVY, HOSTILE_CELL, HOSTILE_SESSION, SCRIPT, SESSION, hostile_store

from codemode_store import ObservationStore, Outcome, TextItem
from scripts.screenshot import PLOTS, Server, browser, browser_missing, showcase_store

pytest.importorskip("starlette", reason="the web extra is not installed (pip install '.[web]')")

MANY = "many-cells"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless chromium for the module."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the browser tests cannot run: {missing}", pytrace=False)
        pytest.skip(f"browser tests skipped: {missing}")
    with browser() as running:
        yield running


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store, session ``plots`` with a retained chart, the hostile corpus, and 150 cells."""
    path = showcase_store(tmp_path_factory.mktemp("browser"))
    hostile_store(path)
    with ObservationStore.open(path, durability="normal") as store:
        s = store.session(MANY)
        for index in range(150):
            s.create_cell(f"c-{index:03d}")
    return path


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[Server]:
    """A read-only server of ``db``."""
    with Server(db) as running:
        yield running


@pytest.fixture(scope="module")
def releasing(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with --allow-release over a copy of ``db``."""
    copy = tmp_path_factory.mktemp("releasing") / "store.db"
    shutil.copyfile(db, copy)
    with Server(copy, "--allow-release") as running:
        yield running


def load(driver: Any, url: str) -> None:
    """Open ``url`` and wait until the page and its images have loaded."""
    driver.get(url)
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, url
        time.sleep(0.05)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """Return (and clear) the console entries of level SEVERE since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_every_page_loads_without_a_console_error(driver: Any, server: Server, tmp_path: Path) -> None:
    shots = {
        "sessions": server.page("/"),
        "cells": server.page("/cells", session="demo-thread"),
        "cells-retained": server.page("/cells", state="retained"),
        "history": server.page("/history", session="demo-thread", cell="train"),
        "observation-image": server.page("/observation", session=PLOTS, cell="chart", gen=0),
        "observation-tombstone": server.page("/observation", session="demo-thread", cell="load", gen=1),
        "observation-pending": server.page("/observation", session=PLOTS, cell="fit"),
        "observation-failed": server.page("/observation", session=SESSION, cell="failed"),
        "not-found": server.page("/history", session="demo-thread", cell="nope"),
    }
    console_errors(driver)
    for name, url in shots.items():
        load(driver, url)
        driver.save_screenshot(str(tmp_path / f"{name}.png"))
        assert console_errors(driver) == [] or name == "not-found", name  # a 404 is logged as one
        assert "codemode-store" in driver.title
    assert len(list(tmp_path.glob("*.png"))) == len(shots)


def test_an_image_payload_is_drawn(driver: Any, server: Server, tmp_path: Path) -> None:
    load(driver, server.page("/observation", session=PLOTS, cell="chart", gen=0))
    driver.save_screenshot(str(tmp_path / "image.png"))
    sizes = driver.execute_script(
        "return Array.from(document.querySelectorAll('img.payload'),"
        " i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes and all(complete and width > 0 and height > 0 for complete, width, height in sizes)


def hostile_pages(server: Server) -> dict[str, str]:
    pages = {
        case: server.page("/observation", session=SESSION, cell=case) for case in (*CASES, *HEAVY, "failed")
    }
    pages["ids-sessions"] = server.page("/")
    pages["ids-cells"] = server.page("/cells", session=HOSTILE_SESSION)
    pages["ids-history"] = server.page("/history", session=HOSTILE_SESSION, cell=HOSTILE_CELL)
    pages["ids-observation"] = server.page("/observation", session=HOSTILE_SESSION, cell=HOSTILE_CELL)
    return pages


CANARY_SET = "return window.__pwned !== undefined || document.title === 'pwned'"


def test_the_canary_sees_a_script_that_ran(driver: Any, server: Server) -> None:
    load(driver, server.page("/"))
    assert driver.execute_script(CANARY_SET) is False
    driver.execute_script(SCRIPT.removeprefix("<script>").removesuffix("</script>"))
    assert driver.execute_script(CANARY_SET) is True


@pytest.mark.slow
def test_the_hostile_corpus_runs_no_script(driver: Any, server: Server, tmp_path: Path) -> None:
    console_errors(driver)
    for name, url in hostile_pages(server).items():
        load(driver, url)
        time.sleep(0.1)  # an onerror handler would run just after the load
        driver.save_screenshot(str(tmp_path / f"hostile-{name}.png"))
        assert driver.execute_script(CANARY_SET) is False, name
        # A blocked inline script or a refused image is logged as an error: none may be.
        assert console_errors(driver) == [], name
    load(driver, server.page("/observation", session=SESSION, cell="nul-and-bidi"))
    escapes = driver.execute_script(
        "return Array.from(document.querySelectorAll('.ctl'), e => e.textContent)"
    )
    assert {r"\x00", r"\u202e", r"\u2066", r"\x1b"} <= set(escapes)


def test_there_is_no_release_button_without_allow_release(
    driver: Any, server: Server, tmp_path: Path
) -> None:
    load(driver, server.page("/observation", session=PLOTS, cell="chart", gen=0))
    assert driver.find_elements("link text", "Release…") == []
    load(driver, server.page("/cells", session=PLOTS))
    assert driver.find_elements("link text", "End session…") == []
    load(driver, server.page("/release", session=PLOTS, cell="chart", gen=0))
    driver.save_screenshot(str(tmp_path / "release-refused.png"))
    assert "read-only" in driver.find_element("tag name", "main").text
    console_errors(driver)  # the 403 itself is logged


def wait_for_text(driver: Any, selector: str, text: str) -> None:
    """Wait (up to 30 s) until the element at ``selector`` shows ``text``: a click's navigation has ended."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + 30
    while True:
        try:
            found = driver.find_elements("css selector", selector)
            if (
                found
                and text in found[0].text
                and driver.execute_script("return document.readyState") == "complete"
            ):
                return
        except StaleElementReferenceException:
            pass  # the page was replaced (navigation or refresh) between the find and the read: look again
        assert time.monotonic() < deadline, (selector, text, driver.current_url)
        time.sleep(0.05)


def test_the_release_button_releases_with_allow_release(
    driver: Any, releasing: Server, tmp_path: Path
) -> None:
    load(driver, releasing.page("/observation", session=PLOTS, cell="chart", gen=0))
    driver.find_element("link text", "Release…").click()
    wait_for_text(driver, "h1", "Release generation 0")
    driver.save_screenshot(str(tmp_path / "release-confirm.png"))
    driver.find_element("id", "confirm").click()
    wait_for_text(driver, "main", "Released: the payload was dropped")
    driver.save_screenshot(str(tmp_path / "released.png"))
    wait_for_text(driver, ".fields .state", "released")  # read again if a refresh replaced the page
    assert driver.find_elements("css selector", "img.payload") == []
    assert console_errors(driver) == []


def test_a_refresh_keeps_the_scroll_place(driver: Any, server: Server, db: Path, tmp_path: Path) -> None:
    driver.set_window_size(1000, 500)
    try:
        load(driver, server.page("/cells", session=MANY))
        driver.execute_script("window.scrollTo(0, 900); document.querySelector('main').dataset.old = 'yes';")
        with ObservationStore.open(db) as store:
            s = store.session(MANY)
            s.begin("c-010", 0)
            s.record("c-010", 0, Outcome.yielded([TextItem("new output")]))
        deadline = time.monotonic() + 20
        while driver.execute_script("return document.querySelector('main').dataset.old") == "yes":
            assert time.monotonic() < deadline, "the page did not refresh"
            time.sleep(0.2)
        driver.save_screenshot(str(tmp_path / "refreshed.png"))
        assert "retained" in driver.find_element("css selector", "tbody tr:nth-child(11)").text
        assert driver.execute_script("return window.scrollY") == 900
        assert driver.find_element("id", "refresh-status").text.startswith("updated")
        assert console_errors(driver) == []
    finally:
        driver.set_window_size(1200, 900)

"""Drive headless chromium through ``codemode-store serve``: the browser tests' helper, and screenshots.

``python scripts/screenshot.py [--out docs]`` plays the demo into a temporary
folder, adds a session whose chart is still retained (the demo acknowledges
its own, so its store holds no image by the end), serves it, and saves a
screenshot of each page as ``web-*.png``. The browser tests
(tests/test_web_browser.py) use :func:`browser`, :class:`Server` and
:func:`showcase_store` from here, so the README shows what they test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

#: Debian's packages (apt-get install chromium chromium-driver).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The session :func:`showcase_store` adds beside the demo's, with an image kept.
PLOTS = "plots"


def browser_missing() -> str | None:
    """Return why the browser cannot be driven here, or ``None`` when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    return None


@contextmanager
def browser(width: int = 1200, height: int = 900) -> Iterator[Any]:
    """Yield a headless chromium WebDriver that records the browser console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Server:
    """A ``codemode-store serve --port 0`` process; its URL is read from what it prints."""

    def __init__(
        self, db: Path | str, *arguments: str, timeout: float = 60.0, cwd: Path | None = None
    ) -> None:
        """Serve ``db`` (relative to ``cwd``) with extra ``arguments`` (``--allow-release``, ``--host``)."""
        code = "from codemode_store.cli import main; main()"
        env = {k: v for k, v in os.environ.items() if k != "CODEMODE_STORE_URL"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "--db", str(db), "serve", "--port", "0", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            cwd=cwd,
        )
        self.printed: list[str] = []
        found = threading.Event()
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def read() -> None:
            for line in stdout:
                self.printed.append(line.rstrip("\n"))
                if line.startswith("  http://"):
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(timeout) or not any(line.startswith("  http://") for line in self.printed):
            self.stop()
            raise RuntimeError("the server did not print its URL:\n" + "\n".join(self.printed))
        self.url = next(line.strip() for line in self.printed if line.startswith("  http://"))
        self.base = self.url.split("?", 1)[0].rstrip("/")

    def page(self, path: str, **params: Any) -> str:
        """Return the URL of a page of this server."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return self.base + path + (f"?{query}" if query else "")

    def stop(self) -> None:
        """Stop the server (SIGTERM, as Ctrl+C would)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def bar_chart(values: Sequence[float], width: int = 480, height: int = 200) -> bytes:
    """Return a PNG of a bar chart of ``values`` (0 to 1): real image bytes, as a plotting cell would make."""
    import struct
    import zlib

    bar = width // len(values)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # no filter
        for x in range(width):
            index, within = divmod(x, bar)
            top = height - int(values[min(index, len(values) - 1)] * (height - 10))
            inside = y >= top and 6 <= within < bar - 6
            rows.extend((52, 120, 198) if inside else (250, 251, 252) if y % 40 else (220, 224, 230))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def showcase_store(folder: Path) -> Path:
    """Play the demo into ``folder`` and add session ``plots`` with a retained chart; return the file."""
    import base64

    from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
    from codemode_store.cli_support.demo import run_demo

    path = folder / "demo.db"
    run_demo(path, lambda _line: None)
    losses = [0.92, 0.61, 0.44, 0.35, 0.29, 0.26, 0.24, 0.23]
    chart = "data:image/png;base64," + base64.b64encode(bar_chart(losses)).decode("ascii")
    # As a host would write it: with a host id, so the sessions page lists the host.
    with ObservationStore.open(path, host_id="worker-1") as store:
        s = store.session(PLOTS)
        s.create_cell("chart")
        s.begin("chart", 0, {"yield_time_ms": 10000})
        text = "loss by epoch: " + "  ".join(f"{v:.2f}" for v in losses) + "\n"
        s.record("chart", 0, Outcome.completed([TextItem(text), ImageItem(chart, "high")]))
        s.create_cell("fit")
        s.begin("fit", 0, {"yield_time_ms": 10000})
        s.record("fit", 0, Outcome.yielded([TextItem("epoch 1/3: loss 0.91\nepoch 2/3: loss 0.55\n")]))
        s.begin("fit", 1, {"yield_time_ms": 10000})
    return path


#: The pages the screenshots show: (file name, path, query).
SHOTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("web-sessions.png", "/", {}),
    ("web-cells.png", "/cells", {"session": "demo-thread"}),
    ("web-history.png", "/history", {"session": "demo-thread", "cell": "train"}),
    ("web-observation.png", "/observation", {"session": PLOTS, "cell": "chart", "gen": 0}),
)


def screenshots(
    server: Server, driver: Any, out: Path, shots: Sequence[tuple[str, str, dict[str, Any]]] = SHOTS
) -> list[Path]:
    """Load each page of ``shots`` and save its screenshot into ``out``; return the files."""
    saved = []
    for name, path, params in shots:
        driver.get(server.page(path, **params))
        target = out / name
        driver.save_screenshot(str(target))
        saved.append(target)
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    """Take the README's screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the PNG files")
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing is not None:
        print(f"cannot take screenshots: {missing}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="codemode-screenshots-"))
    try:
        db = showcase_store(folder)
        with Server(db.name, cwd=db.parent) as server, browser(1100, 800) as driver:
            for path in screenshots(server, driver, args.out):
                print(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

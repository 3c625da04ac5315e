"""The web page in a real browser: headless Chromium driven over the DevTools protocol.

The app is served by uvicorn on a free loopback port in a thread; Chromium (Debian's
`chromium` package, with a fresh empty profile) loads `/`, a query is typed and sent with
Enter, result cards appear with their thumbnails, one is clicked like a user would, and
the `<video>` player must then hold the moment's stream and sit at its start time. The
DevTools client is a few lines over `websocket-client`. Skipped when Chromium or
`websocket-client` is missing (`.ci/run` installs Chromium).
"""

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from engine.config import Settings
from tests.api.app_env import API_KEY, COLLECTION, World, shared_world, with_api

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
]
TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return shared_world(tmp_path_factory)


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT_S)
        sock.close()


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=TIMEOUT_S, suppress_origin=True)
        self.next_id = 0

    def close(self) -> None:
        self.ws.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        """Poll `expression` until it is truthy (a JS error counts as not yet)."""
        deadline = time.monotonic() + TIMEOUT_S
        last_error: RuntimeError | None = None
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as e:  # e.g. the element is not there yet
                value, last_error = None, e
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}") from last_error
            time.sleep(0.05)

    def open(self, url: str) -> None:
        """Navigate and wait until the page has loaded."""
        self.call("Page.navigate", url=url)
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"{url} to load",
        )

    def click(self, x: float, y: float) -> None:
        """A real (trusted) left click at page coordinates."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}),
            )


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """Headless Chromium with an empty profile; yields a client of its blank page."""
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page" and t["url"] == "about:blank")
        tools = DevTools(page["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def search_click_and_check_the_player(page: DevTools, base: str) -> None:
    """Type a query, see cards with thumbnails, click one: the player sits at its start."""
    options = page.wait_for(
        "[...document.querySelectorAll('#collection option')].map(o => o.value)",
        "the collection list",
    )
    assert COLLECTION in options
    page.evaluate(f"document.querySelector('#collection').value = {json.dumps(COLLECTION)}")

    page.evaluate("document.querySelector('#query').focus()")
    page.call("Input.insertText", text="a red square")
    page.press_enter()
    n_cards = page.wait_for("document.querySelectorAll('#results .card').length", "cards")
    assert n_cards == 10  # search.top_k
    page.wait_for(
        "[...document.querySelectorAll('#results .card img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        "the thumbnails",
    )
    texts = page.evaluate("[...document.querySelectorAll('#results .card')].map(c => c.innerText)")
    for text in texts:
        assert re.search(r"\d\d:\d\d-\d\d:\d\d", text) and ".mp4" in text

    page.evaluate(
        "window.seekingAt = [];"
        "document.querySelector('#player').addEventListener('seeking',"
        " e => window.seekingAt.push(e.target.currentTime))"
    )
    target = page.evaluate(
        """(() => {
            const card = [...document.querySelectorAll('#results .card')]
                .find(c => Number(c.dataset.start) > 0);
            card.scrollIntoView({block: 'center'});
            const r = card.getBoundingClientRect();
            return {x: r.x + r.width / 2, y: r.y + r.height / 2,
                    start: Number(card.dataset.start), video: Number(card.dataset.videoId)};
        })()"""
    )
    page.click(target["x"], target["y"])

    seeking = page.wait_for("window.seekingAt.length && window.seekingAt[0]", "the seek")
    assert seeking == pytest.approx(target["start"], abs=0.05)
    state = page.wait_for(
        """(() => {
            const p = document.querySelector('#player');
            return p.readyState >= 1 && !p.seeking &&
                {src: p.currentSrc, time: p.currentTime,
                 hidden: p.closest('[hidden]') !== null};
        })()""",
        "the player",
    )
    assert state["src"] == f"{base}/v1/videos/{target['video']}/stream"
    assert not state["hidden"]
    assert target["start"] - 0.05 <= state["time"] <= target["start"] + 1.0
    assert page.evaluate("document.querySelector('.card.active') !== null")


def test_search_click_plays_from_the_moment(world: World, tmp_path: Path) -> None:
    with live_server(world.settings) as base, chromium(tmp_path / "profile") as page:
        page.open(f"{base}/")
        search_click_and_check_the_player(page, base)
        assert page.evaluate("document.querySelector('#key-form').hidden")  # no auth: no key


def test_with_api_keys_the_page_asks_for_one(world: World, tmp_path: Path) -> None:
    """The key typed once opens the API (header) and the thumbnails and stream (cookie)."""
    locked = with_api(world.settings, api_keys=[API_KEY])
    with live_server(locked) as base, chromium(tmp_path / "profile") as page:
        page.open(f"{base}/")
        page.wait_for("!document.querySelector('#key-form').hidden", "the key field")
        assert "API key" in page.evaluate("document.querySelector('#status').textContent")
        page.evaluate("document.querySelector('#api-key').focus()")
        page.call("Input.insertText", text=API_KEY)
        page.press_enter()
        search_click_and_check_the_player(page, base)
        assert page.evaluate("localStorage.getItem('vtr.apiKey')") == API_KEY

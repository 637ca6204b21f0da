"""A real Chromium driven over the DevTools protocol, for browser tests that click and hover.

``--dump-dom`` shows a page as loaded; ticking a box or hovering a chart needs input events.
Chromium's ``--remote-debugging-pipe`` speaks the DevTools protocol on file descriptors 3
(commands in) and 4 (replies out), one JSON message per NUL-terminated chunk, so the standard
library is enough: no websocket client, no Selenium or Playwright (neither installs a browser
offline).
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any


class Chromium:
    """One headless browser; :meth:`open` gives a :class:`Page`."""

    def __init__(self, binary: str, flags: list[str], profile: Path, window: tuple[int, int] = (1280, 1400)):
        commands_in, self._commands = os.pipe()
        self._replies, replies_out = os.pipe()
        # above 4, so that putting them on 3 and 4 cannot overwrite one with the other
        commands_in, replies_out = (_above(fd, 5) for fd in (commands_in, replies_out))
        flags = [f for f in flags if not f.startswith("--window-size")]  # ours below
        argv = [binary, *flags, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                "--remote-debugging-pipe", "about:blank"]

        def on_3_and_4() -> None:  # in the child, before exec: where Chromium looks for the pipe
            os.dup2(commands_in, 3)
            os.dup2(replies_out, 4)

        self.process = subprocess.Popen(
            argv, preexec_fn=on_3_and_4, pass_fds=(3, 4, commands_in, replies_out),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(commands_in)
        os.close(replies_out)
        self._buffer = b""
        self._next_id = 0

    def send(self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", url=url)["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _above(fd: int, lowest: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.browser.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true: {expression}")
            time.sleep(0.2)

    def center(self, selector: str) -> tuple[float, float]:
        box = self.js(f"(() => {{ const b = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                      " return [b.left + b.width / 2, b.top + b.height / 2]; })()")
        return box[0], box[1]

    def scroll_to(self, selector: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")

    def click(self, selector: str) -> None:
        """A real click (mouse down and up at the element's centre), as a person makes it."""
        self.scroll_to(selector)
        x, y = self.center(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", self.session, type=kind, x=x, y=y, button="left", clickCount=1)

    def hover(self, x: float, y: float) -> None:
        self.browser.send("Input.dispatchMouseEvent", self.session, type="mouseMoved", x=x, y=y)

    def screenshot(self, path: Path) -> None:
        data = self.browser.send("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

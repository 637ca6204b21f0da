"""The web dashboard: a read-only local HTTP server with a fixed table of routes.

The standard library's ``ThreadingHTTPServer`` is enough here: a handful of GET routes, no
templates, no sessions, and no dependency to install. No route maps a URL to a file path, so
there is nothing to traverse: anything not in the table is a 404.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trainer.dashboard.snapshot import Sources

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


def api_routes(sources: Sources) -> dict[str, Callable[[], Any]]:
    return {
        "/api/training": sources.training,
        "/api/daemon": sources.daemon,
        "/api/metrics": sources.metrics,
        "/api/previews": sources.previews,
    }


def finite(value: Any) -> Any:
    """NaN and infinities become null: browsers' JSON.parse rejects them, and a diverged run
    (loss NaN) is exactly when the page must keep working."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def api_body(read: Callable[[], Any]) -> bytes:
    try:
        data = read()
    except Exception as exc:  # noqa: BLE001 (a file in an odd state must not break the page)
        log.exception("dashboard route failed")
        data = {"waiting": f"cannot read the status right now: {exc}"}
    return json.dumps(finite(data), ensure_ascii=False, allow_nan=False).encode()


def make_handler(sources: Sources) -> type[BaseHTTPRequestHandler]:
    api = api_routes(sources)

    class Handler(BaseHTTPRequestHandler):
        server_version = "hero-trainer-dashboard"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in api:
                self._send(HTTPStatus.OK, api_body(api[path]), "application/json")
            elif path in ASSETS:
                name, kind = ASSETS[path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), kind)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain; charset=utf-8")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def make_server(sources: Sources, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(sources))
    server.daemon_threads = True
    return server


def serve(sources: Sources, host: str, port: int) -> int:
    server = make_server(sources, host, port)
    print(f"dashboard on http://{host}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

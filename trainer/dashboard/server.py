"""The web dashboard: a read-only local HTTP server with a fixed table of routes.

The standard library's ``ThreadingHTTPServer`` is enough here: a handful of GET routes, no
templates, no sessions, and no dependency to install. No route maps a URL to a file path, so
there is nothing to traverse: anything not in the table is a 404.

Other web sites cannot read it. A page on ``evil.example`` can point its own name at 127.0.0.1
(DNS rebinding) and then read the answers as same-origin; its requests still carry
``Host: evil.example``. So a request is answered only when its ``Host`` names this server
(:func:`allowed_host_names`) and its port; anything else, a missing Host included, is a 403.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from trainer.dashboard.snapshot import NotServed, Sources, spell_non_finite

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
TEXT = "text/plain; charset=utf-8"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
HOST_RE = re.compile(r"(?:\[([0-9a-f:.]+)\]|([a-z0-9._-]+))(?::([0-9]{1,5}))?")


def api_routes(sources: Sources) -> dict[str, Callable[[], Any]]:
    return {
        "/api/training": sources.training,
        "/api/daemon": sources.daemon,
        "/api/metrics": sources.metrics,
        "/api/previews": sources.previews,
        "/api/runs": sources.runs,
    }


def named_routes(sources: Sources) -> dict[str, Callable[[str], Any]]:
    """Routes that take one ``?name=`` (a run under the output folder); the name is looked up
    among the runs listed, never joined onto a path."""
    return {"/api/run-metrics": sources.run_metrics}


def api_body(read: Callable[[], Any]) -> bytes:
    """The route's JSON; a file in an odd state gives a ``waiting`` object, never an error page.

    Raises:
        NotServed: passed through, so that the route answers 404.
    """
    try:
        data = read()
    except NotServed:
        raise
    except Exception as exc:  # noqa: BLE001 (a file in an odd state must not break the page)
        log.exception("dashboard route failed")
        data = {"waiting": f"cannot read the status right now: {exc}"}
    # the snapshots already spell NaN as text; this makes sure no bare NaN reaches JSON.parse
    return json.dumps(spell_non_finite(data), ensure_ascii=False, allow_nan=False).encode()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _machine_names() -> set[str]:
    names = set()
    for lookup in (socket.gethostname, socket.getfqdn):
        try:
            names.add(lookup().lower())
        except OSError:
            pass
    return names - {""}


def allowed_host_names(bound: str) -> frozenset[str]:
    """Names a browser may send in ``Host`` (without the port) for a server bound to ``bound``.

    - Loopback (127.0.0.1, ::1, localhost): the loopback names only. Only this machine can
      connect, so the machine's hostname buys nothing and could be a name someone else resolves.
    - A specific address (e.g. 192.168.1.5): that address, and this machine's hostname and FQDN,
      which people type on their network. Loopback names do not reach such a socket anyway.
    - The wildcard (0.0.0.0, ::): loopback names, hostname and FQDN. IP literals of this
      machine's other interfaces are accepted per request by :func:`host_allowed`: the address
      the connection really arrived on. An IP literal cannot be rebound, so it is safe.

    A rebinding attacker controls only names of their own domain, and none of these.
    """
    bound = bound.strip("[]").lower()
    if bound in WILDCARD_ADDRESSES:
        return LOOPBACK_NAMES | _machine_names()
    if _is_loopback(bound):
        return LOOPBACK_NAMES | {bound}
    return frozenset({bound} | _machine_names())


def _same_address(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    x = getattr(x, "ipv4_mapped", None) or x  # a dual-stack socket sees ::ffff:192.168.1.5
    y = getattr(y, "ipv4_mapped", None) or y
    return x == y


def host_allowed(header: str | None, names: frozenset[str], port: int, local_address: str) -> bool:
    """Whether a ``Host`` header names this server: an allowed name or the connection's own
    address, and the server's port (no port only on port 80, HTTP's default)."""
    if header is None:
        return False  # HTTP/1.1 requires Host
    match = HOST_RE.fullmatch(header.strip().lower())
    if not match:
        return False
    name = match.group(1) or match.group(2)
    given_port = int(match.group(3)) if match.group(3) else 80
    if given_port != port:
        return False
    return name in names or _same_address(name, local_address)


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    host_names: frozenset[str] = frozenset()


def make_handler(sources: Sources) -> type[BaseHTTPRequestHandler]:
    api = api_routes(sources)
    named = named_routes(sources)

    class Handler(BaseHTTPRequestHandler):
        server_version = "hero-trainer-dashboard"
        server: DashboardServer

        def parse_request(self) -> bool:
            """http.server's parsing, then the Host check, for every method alike."""
            if not super().parse_request():
                return False
            hosts = self.headers.get_all("Host") or []
            header = hosts[0] if len(hosts) == 1 else None  # two Host headers: refused too
            local = self.connection.getsockname()[0]
            if host_allowed(header, self.server.host_names, self.server.server_port, local):
                return True
            log.warning("refused a request for Host %r (DNS rebinding defence)", hosts)
            self.close_connection = True
            self._send(HTTPStatus.FORBIDDEN, b"refused: the Host header does not name this dashboard\n", TEXT)
            return False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path, _, query = self.path.partition("?")
            names = parse_qs(query).get("name", [])
            read = api.get(path)
            if path in named and len(names) == 1:
                read = functools.partial(named[path], names[0])
            if read is not None:
                try:
                    self._send(HTTPStatus.OK, api_body(read), "application/json")
                except NotServed as exc:
                    log.warning("not served: %s", exc)
                    self._not_found()
            elif path in ASSETS:
                name, kind = ASSETS[path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), kind)
            else:
                self._not_found()

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _not_found(self) -> None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", TEXT)

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", TEXT)

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def make_server(sources: Sources, host: str = "127.0.0.1", port: int = 8765) -> DashboardServer:
    server = DashboardServer((host, port), make_handler(sources))
    server.host_names = allowed_host_names(host)
    return server


def serve(sources: Sources, host: str, port: int) -> int:
    server = make_server(sources, host, port)
    shown = "127.0.0.1" if host in WILDCARD_ADDRESSES else f"[{host}]" if ":" in host else host
    also = " and this machine's addresses" if host in WILDCARD_ADDRESSES else ""
    print(f"dashboard on http://{shown}:{server.server_port}/{also} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

"""Toxiproxy's HTTP API over the built-in engine, so toxiproxy-python and any Toxiproxy client
(Go, Ruby, toxiproxy-cli) can drive it. Routes, status codes and JSON shapes follow Toxiproxy 2.x
(api.go): proxies as ``{name, listen, upstream, enabled, toxics}``, toxics as
``{name, type, stream, toxicity, attributes}``, errors as ``{"error": ..., "status": ...}``.
One addition: ``GET /proxies/{name}/stats`` returns the evidence counters.

It runs on the stdlib threading HTTP server: requests are rare and tiny, and the engine's
methods are thread-safe, so an HTTP stack on the proxy's own loop would buy nothing.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chaoskit import __version__
from chaoskit.proxy.server import ProxyServer
from chaoskit.proxy.toxics import ToxicError

VERSION = f"chaoskit-{__version__}"

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/reset$"), "reset"),
    ("GET", re.compile(r"^/version$"), "version"),
    ("POST", re.compile(r"^/populate$"), "populate"),
    ("GET", re.compile(r"^/proxies$"), "proxy_index"),
    ("POST", re.compile(r"^/proxies$"), "proxy_create"),
    ("GET", re.compile(r"^/proxies/(?P<proxy>[^/]+)$"), "proxy_show"),
    ("POST", re.compile(r"^/proxies/(?P<proxy>[^/]+)$"), "proxy_update"),
    ("PATCH", re.compile(r"^/proxies/(?P<proxy>[^/]+)$"), "proxy_update"),
    ("DELETE", re.compile(r"^/proxies/(?P<proxy>[^/]+)$"), "proxy_delete"),
    ("GET", re.compile(r"^/proxies/(?P<proxy>[^/]+)/stats$"), "proxy_stats"),
    ("GET", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics$"), "toxic_index"),
    ("POST", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics$"), "toxic_create"),
    ("GET", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)$"), "toxic_show"),
    ("POST", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)$"), "toxic_update"),
    ("PATCH", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)$"), "toxic_update"),
    ("DELETE", re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)$"), "toxic_delete"),
]


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None):
        self.status = status
        self.body = body


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        allowed = False
        for m, rx, name in _ROUTES:
            match = rx.match(path)
            if not match:
                continue
            allowed = True
            if m != method:
                continue
            try:
                status, body = getattr(self, "h_" + name)(**match.groupdict())
            except _Reply as r:
                status, body = r.status, r.body
            except ToxicError as exc:
                status, body = exc.status, {"error": str(exc), "status": exc.status}
            self._send(status, body)
            return
        if allowed:
            self._send(405, {"error": "method not allowed", "status": 405})
        else:
            self._send(404, {"error": "404 page not found", "status": 404})

    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _json(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _Reply(400, {"error": f"bad request body: {exc}", "status": 400}) from None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    # -- handlers: (status, body) ----------------------------------------------------------------
    @property
    def engine(self) -> ProxyServer:
        return self.server.engine

    def h_reset(self) -> tuple[int, Any]:
        self.engine.reset()
        return 204, None

    def h_version(self) -> tuple[int, Any]:
        return 200, {"version": VERSION}

    def h_populate(self) -> tuple[int, Any]:
        return 201, {"proxies": self.engine.populate(self._json())}

    def h_proxy_index(self) -> tuple[int, Any]:
        return 200, self.engine.list_proxies()

    def h_proxy_create(self) -> tuple[int, Any]:
        body = self._json()
        if not isinstance(body, dict):
            raise _Reply(400, {"error": "bad request body: expected a JSON object", "status": 400})
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise _Reply(400, {"error": "enabled must be true or false", "status": 400})
        return 201, self.engine.create_proxy(
            body.get("name", ""),
            body.get("listen") or "127.0.0.1:0",
            body.get("upstream", ""),
            enabled,
        )

    def h_proxy_show(self, proxy: str) -> tuple[int, Any]:
        return 200, self.engine.get_proxy(proxy)

    def h_proxy_update(self, proxy: str) -> tuple[int, Any]:
        return 200, self.engine.update_proxy(proxy, self._json())

    def h_proxy_delete(self, proxy: str) -> tuple[int, Any]:
        self.engine.delete_proxy(proxy)
        return 204, None

    def h_proxy_stats(self, proxy: str) -> tuple[int, Any]:
        return 200, self.engine.evidence(proxy)

    def h_toxic_index(self, proxy: str) -> tuple[int, Any]:
        return 200, self.engine.list_toxics(proxy)

    def h_toxic_create(self, proxy: str) -> tuple[int, Any]:
        return 200, self.engine.add_toxic(proxy, self._json())

    def h_toxic_show(self, proxy: str, toxic: str) -> tuple[int, Any]:
        return 200, self.engine.get_toxic(proxy, toxic)

    def h_toxic_update(self, proxy: str, toxic: str) -> tuple[int, Any]:
        return 200, self.engine.update_toxic(proxy, toxic, self._json())

    def h_toxic_delete(self, proxy: str, toxic: str) -> tuple[int, Any]:
        self.engine.remove_toxic(proxy, toxic)
        return 204, None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], engine: ProxyServer, verbose: bool):
        self.engine = engine
        self.verbose = verbose
        super().__init__(addr, _Handler)


class ApiServer:
    """The HTTP API in a daemon thread, over a ``ProxyServer`` (its own unless one is given)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8474,
        engine: ProxyServer | None = None,
        verbose: bool = False,
    ):
        self.engine = engine or ProxyServer()
        self.engine.start_in_thread()
        self.httpd = _HTTPServer((host, port), self.engine, verbose)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start_in_thread(self) -> ApiServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, name="chaoskit-proxy-api", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever: only if it runs
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
        self.engine.close()

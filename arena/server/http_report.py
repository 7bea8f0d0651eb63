"""The live HTML report over plain HTTP (`arena serve --http-port`), stdlib only.

GET / renders `scoreboard.report.render_html` from the store (cached for a few seconds, as the
figures take a moment); GET /healthz answers "ok". Read-only, no token: it shows exactly what
the leaderboard shows to every team.

GET /metrics (Prometheus) is the operator's (docs/rules.md section 4, rules v3): it tells timings
and every team's activity per defense, so it answers only a request carrying an organizer token
(`Authorization: Bearer TOKEN`, as Prometheus' `authorization` scrape setting sends it): 401
without a valid token, 403 with a team's, and nothing of the metrics either way.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from arena.server.leaderboard import report_html
from arena.server.metrics import CONTENT_TYPE
from arena.server.store import OPEN, ORGANIZER, PRIVATE, PUBLIC
from arena.server.store import Store

log = logging.getLogger("arena.http")


class ReportServer:
    """The live HTML report over HTTP (no token: the public board while open, the official one once
    final), cached for a few seconds."""
    def __init__(self, store: Store, host: str, port: int, cache_s: float = 5.0, metrics=None, tokens=None,
                 attack_board_top_k: int = 0) -> None:
        self._store = store
        self._top_k = attack_board_top_k
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, bytes] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (stdlib name)
                if self.path in ("/", "/index.html", "/report.html"):
                    try:
                        body, ctype, code = outer._report(), "text/html; charset=utf-8", 200
                    except Exception:
                        log.exception("report rendering failed")
                        body, ctype, code = b"the report could not be rendered", "text/plain", 500
                elif self.path == "/metrics" and metrics is not None:
                    code = outer._metrics_access(self.headers.get("Authorization", ""), tokens)
                    body, ctype = (metrics.exposition(), CONTENT_TYPE) if code == 200 else (
                        b"the metrics are the organizer's: send Authorization: Bearer <organizer token>", "text/plain")
                elif self.path == "/healthz":
                    body, ctype, code = b"ok", "text/plain", 200
                else:
                    body, ctype, code = b"not found", "text/plain", 404
                self.send_response(code)
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="arena metrics"')
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # quiet
                log.debug("http: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.address = f"{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="arena-http", daemon=True)
        self._thread.start()

    @staticmethod
    def _metrics_access(authorization: str, tokens) -> int:
        """200 for an organizer's token, 403 for a team's, 401 otherwise."""
        scheme, _, token = authorization.strip().partition(" ")
        if tokens is None or scheme.lower() != "bearer" or not token.strip():
            return 401
        try:
            identity = tokens.identity(token.strip())
        except Exception:
            log.exception("metrics: the token could not be checked")
            return 401
        if identity is None:
            return 401
        return 200 if identity[1] == ORGANIZER else 403

    def _report(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._cache_s:
                # no token here: the public board while open, the official (private) one once final
                split = PUBLIC if self._store.phase() == OPEN else PRIVATE
                self._cached = (now, report_html(self._store, split, attack_board_top_k=self._top_k).encode("utf-8"))
            return self._cached[1]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

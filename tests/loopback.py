"""A stdlib HTTP server on 127.0.0.1 in a thread, shared by the tests that fake a model server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean."""

    def log_message(self, *args: object) -> None:
        pass


class LoopbackServer:
    """Serve a handler class on a free loopback port; `url` ends in /v1. Use as a context manager."""

    release: threading.Event | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        """Bind the handler (the thread starts on __enter__)."""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.release is not None:
            self.release.set()  # let handlers that stall on purpose finish
        self.httpd.shutdown()
        self.httpd.server_close()

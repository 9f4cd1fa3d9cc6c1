"""A stdlib HTTP server on 127.0.0.1 in a thread, shared by the tests that fake a model server."""

from __future__ import annotations

import base64
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


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


def embeddings_handler(embed: Callable[[list[str]], list[list[float]]]) -> type[QuietHandler]:
    """A handler for POST /v1/embeddings (OpenAI's shape, float or base64 vectors) answered by `embed`;
    its `batches` lists each request's number of inputs."""

    class EmbeddingsHandler(QuietHandler):
        batches: list[int] = []

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/embeddings":
                self.send_error(404)
                return
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            type(self).batches.append(len(inputs))
            data = []
            for n, vector in enumerate(embed(inputs)):
                value: Any = vector
                if body.get("encoding_format") == "base64":
                    value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": n, "embedding": value})
            payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return EmbeddingsHandler

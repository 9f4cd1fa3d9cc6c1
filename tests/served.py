"""`assistant serve` in a thread on a free loopback port, for the server and web page tests."""

from __future__ import annotations

import threading
from typing import Iterator

from caches import clear_process_caches

from assistant.interfaces.server import AssistantServer, make_server
from assistant.settings import Settings


def running(settings: Settings, token: str = "") -> Iterator[AssistantServer]:
    """Yield a started server (fresh caches before and after); shut down and closed afterwards."""
    clear_process_caches()
    server = make_server(settings, port=0, token=token)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        clear_process_caches()

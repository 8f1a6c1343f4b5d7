"""A local HTTP receiver on 127.0.0.1 that records the JSON bodies POSTed to it, like an alert webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class WebhookReceiver:
    """Its URL, the bodies received (raw text and parsed JSON) and the status it answers with."""

    url: str = ""
    raw_bodies: list[str] = field(default_factory=list)
    status: int = 200

    @property
    def payloads(self) -> list[Any]:
        """Every body received, parsed as JSON."""
        return [json.loads(body) for body in self.raw_bodies]


@contextmanager
def running_webhook_receiver(path: str = "/hooks/T000/B000/not-a-real-secret") -> Iterator[WebhookReceiver]:
    """A receiver on a free loopback port; stopped on exit."""
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if self.path == path and self.headers.get("Content-Type", "").startswith("application/json"):
                receiver.raw_bodies.append(body)
            self.send_response(receiver.status if self.path == path else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

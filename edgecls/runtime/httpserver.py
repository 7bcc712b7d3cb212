"""A ThreadingHTTPServer with a cap on concurrent connections, shared by the web view and the serve gateway."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `slots` at once: one more is answered 503 and closed at once."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, slots: int):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(slots)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

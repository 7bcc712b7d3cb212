"""A ThreadingHTTPServer with a cap on concurrent connections, shared by the web view and the serve gateway, and
deadlines for the connections whose handler reports what it is waiting for (`DeadlineHandler`).

Why deadlines and not only socket timeouts: a socket timeout bounds one read, and each byte a slow client sends
restarts it. 127 clients sending one body byte every 20 s held every slot of the gateway for as long as they liked
(an honest client got 0 of 980 answers). Here a request's whole life is bounded, as Apache's mod_reqtimeout and
nginx's client timeouts do: the wait for a request's first byte (keep-alive idle), then its headers, then its body
at a minimum transfer rate; a watchdog shuts down a connection whose deadline passed. And when every slot is taken,
a newcomer takes the slot of the connection that has waited longest for request bytes (never one whose request is
being answered), so slow clients piling up cost an honest one at most that wait, not its answer.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WATCH_INTERVAL_S = 0.2
EVICTION_GRACE_S = 1.0  # a connection waiting for less than this is never taken over: an honest request is this quick


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `slots` at once. A newcomer beyond that takes the slot of the connection that
    has waited longest (over EVICTION_GRACE_S) for request bytes; with none to take, it is answered 503 and closed."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, slots: int):
        self.slots = threading.BoundedSemaphore(slots)
        self._waiting: dict[socket.socket, tuple[float, float]] = {}  # connection: (waiting since, deadline)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        super().__init__(address, handler)  # closes the server (server_close) when it cannot listen
        threading.Thread(target=self._watch, name="edgecls-http-deadlines", daemon=True).start()

    def expect(self, connection: socket.socket, within_s: float, since: float | None = None) -> None:
        """`connection` waits for request bytes that must all arrive within `within_s` (from `since`, default now)."""
        now = time.monotonic()
        with self._lock:
            self._waiting[connection] = (now if since is None else since, now + within_s)

    def busy(self, connection: socket.socket) -> None:
        """`connection`'s request has arrived and is being answered: no deadline, never taken over."""
        with self._lock:
            self._waiting.pop(connection, None)

    def _watch(self) -> None:
        while not self._closed.wait(WATCH_INTERVAL_S):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, (_, deadline) in self._waiting.items() if deadline < now]
                for conn in late:
                    del self._waiting[conn]
            for conn in late:
                _cut(conn)

    def _take_over_longest_waiting(self) -> bool:
        with self._lock:
            since_of = {conn: since for conn, (since, _) in self._waiting.items()}
            oldest = min(since_of, key=since_of.get, default=None)
            if oldest is None or time.monotonic() - since_of[oldest] < EVICTION_GRACE_S:
                return False
            del self._waiting[oldest]
        _cut(oldest)
        return True

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False) and not (
            self._take_over_longest_waiting() and self.slots.acquire(timeout=1.0)
        ):
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
            self.busy(request)
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client that left or was cut off is not the server's fault: no traceback in the log (130 slow clients
        cut at their deadlines would flood it); anything else is printed as socketserver does."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


def _cut(connection: socket.socket) -> None:
    """Wake the handler blocked reading `connection` with end-of-file: it then closes the connection."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class DeadlineHandler(BaseHTTPRequestHandler):
    """A handler whose connection is bounded by BoundedHTTPServer's deadlines: `idle_timeout_s` for a kept-alive
    connection's next request to begin, `header_timeout_s` for its headers. A handler reading a body calls
    `expect_body(length)` first and `self.server.busy(self.connection)` once it has it."""

    idle_timeout_s = 60.0
    header_timeout_s = 10.0
    body_timeout_s = 10.0
    min_body_rate = 64 << 10  # bytes a second: a 1 MB frame may take 26 s, a 64 MB request 17 minutes

    def handle_one_request(self) -> None:
        since = time.monotonic()
        self.server.expect(self.connection, self.idle_timeout_s, since)
        try:
            started = self.rfile.peek(1)
        except OSError:
            started = b""
        if not started:
            self.close_connection = True
            return
        self.server.expect(self.connection, self.header_timeout_s, since)
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.server.busy(self.connection)
        return parsed

    def expect_body(self, length: int) -> None:
        self.server.expect(self.connection, self.body_timeout_s + length / self.min_body_rate)

"""A transparent TCP relay in front of a real HTTP server that counts requests in flight.

It forwards bytes unchanged in both directions (real sockets, nothing faked) and notes, per
connection, when a request starts (``POST `` from the client) and when its response ends
(the final ``0\\r\\n\\r\\n`` chunk of a chunked body, a complete ``Content-Length`` body, or
the connection closing). :attr:`HttpMeter.max_in_flight` is the most requests the server
had at once; :attr:`HttpMeter.posts` how many were sent; :attr:`HttpMeter.exchanges` what each
asked for and how its response ended, so a test can tell a request sent again after a failure
(a client's retry) from one sent in place of a choice the server would not give.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from types import TracebackType


@dataclass
class Exchange:
    """One request through the relay: its JSON body and how the response to it ended."""

    request: bytes = b""
    response: bytes = b""
    complete: bool = False

    @property
    def body(self) -> dict[str, object]:
        """The request's JSON body ({} if it is not JSON or not all arrived)."""
        try:
            value = json.loads(self.request.partition(b"\r\n\r\n")[2])
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def status(self) -> int | None:
        """The response's HTTP status, None if none came."""
        parts = self.response.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return None
        return int(parts[1])

    @property
    def answered(self) -> bool:
        """A complete 200 response came back."""
        return self.complete and self.status == 200

    def __str__(self) -> str:
        return (f"POST n={self.body.get('n')} -> {self.status} "
                f"({'complete' if self.complete else 'cut off'})")


class HttpMeter:
    """Relay ``127.0.0.1:<port>`` -> ``upstream_host:upstream_port``; use as a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.posts = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> HttpMeter:
        thread = threading.Thread(target=self._accept, name="http-meter", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closing.set()
        self._listener.close()

    def _change(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            if delta > 0:
                self.posts += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            _Connection(self, client, server).start()


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(self, meter: HttpMeter, client: socket.socket, server: socket.socket) -> None:
        self.meter = meter
        self.client = client
        self.server = server
        self.active = False
        self.exchange = Exchange()
        self.lock = threading.Lock()

    def start(self) -> None:
        for target in (self._upstream, self._downstream):
            threading.Thread(target=target, daemon=True).start()

    def _end(self) -> None:
        with self.lock:
            if self.active:
                self.active = False
                self.meter._change(-1)

    def _upstream(self) -> None:
        try:
            while data := self.client.recv(65536):
                if b"POST " in data:
                    with self.lock:
                        if not self.active:
                            self.active = True
                            self.exchange = Exchange()
                            self.meter.exchanges.append(self.exchange)
                            self.meter._change(+1)
                with self.lock:
                    if self.active:
                        self.exchange.request += data
                self.server.sendall(data)
        except OSError:
            pass
        finally:
            self._end()
            _close(self.server)

    def _downstream(self) -> None:
        try:
            while data := self.server.recv(65536):
                self.exchange.response += data
                if _response_complete(self.exchange.response):
                    self.exchange.complete = True
                    self._end()
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self._end()
            _close(self.client)


def _response_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        return body.endswith(b"0\r\n\r\n")
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

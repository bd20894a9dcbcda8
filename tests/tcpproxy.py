"""A TCP proxy on 127.0.0.1 that can cut every connection and refuse new ones: a database
outage for one client, without touching the (shared) database server.

    proxy = TcpProxy("127.0.0.1", 5432).start()   # proxy.port: point the client here
    proxy.cut()        # every open connection is reset; new ones are refused
    proxy.restore()    # listening again, on the same port

One thread accepts; each connection gets two pump threads. Every loop is bounded by the
sockets' lifetime and a short select timeout, so `stop()` returns promptly.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.connections = 0  # accepted so far
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._cut = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="tcpproxy", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> int:
        """Reset every open connection and stop listening (new connections are refused);
        returns how many connections were cut."""
        self._cut.set()
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = set(self._pairs), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)
        return len(pairs)

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._listen()
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # --- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the port may linger a moment after close (bounded retry)
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            sock.close()
            raise OSError(f"cannot listen on 127.0.0.1:{self.port} again")
        sock.listen(64)
        sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:  # cut: refusing until restore()
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.setblocking(True)
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                if self._cut.is_set():
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.add(pair)
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(
        self, pair: tuple[socket.socket, socket.socket], src: socket.socket, dst: socket.socket
    ) -> None:
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a closed socket (fd -1)
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a broken network path or a crashed host does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):  # at once, even while a pump thread still selects on it
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

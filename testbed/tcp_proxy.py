"""A small TCP proxy for the runner's tests: forwards 127.0.0.1:<port> to the test server, and can
go silent on command.

``blackhole()`` stops forwarding in both directions but keeps every socket open: the runner's
kernel still acknowledges what it sends (the proxy's socket does), the server hears nothing and
keeps the session (and its lock) — a network that went silent. ``close()`` then ends the
server-side connections, as the server's own keepalives eventually would.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.silent = threading.Event()
        self.closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), name="proxy-pipe", daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        while not self.closed.is_set():
            if self.silent.is_set():  # hold everything, forward nothing
                self.closed.wait(0.05)
                continue
            try:
                readable = select.select(list(peers), [], [], 0.05)[0]
                for sock in readable:
                    data = sock.recv(65536)
                    if not data or self.silent.is_set():
                        if not data:
                            return self._close_pair(client, server)
                        continue  # swallowed: the network went silent mid-flight
                    peers[sock].sendall(data)
            except OSError:
                return self._close_pair(client, server)
        self._close_pair(client, server)

    @staticmethod
    def _close_pair(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def blackhole(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            self._close_pair(*self._sockets)

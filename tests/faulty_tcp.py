"""A TCP forwarder in front of MariaDB that breaks chosen connections, for the database fault tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FaultyForwarder:
    """
    Forward loopback TCP connections to ``target``, breaking some of them on purpose.

    :param target: the real server's host and port.
    :param refuse_first: close this many new connections at once, before any byte is exchanged.
    :param cut_on: a byte string; the first client packet that contains it triggers a cut.
    :param cut_when: ``before``: the packet never reaches the server; ``after``: it reaches the server,
        but the server's answer never reaches the client.
    """

    target: tuple[str, int]
    refuse_first: int = 0
    cut_on: bytes | None = None
    cut_when: Literal["before", "after"] = "before"
    connections: int = 0
    cuts: int = 0
    _listener: socket.socket = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cut_pending: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                refuse = self.connections <= self.refuse_first
            if refuse:
                client.close()
                continue
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump_client, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_server, args=(server, client), daemon=True).start()

    def _pump_client(self, client: socket.socket, server: socket.socket) -> None:
        while chunk := _recv(client):
            if self.cut_on is not None and self.cut_on in chunk and self._claim_cut():
                if self.cut_when == "before":
                    _close(client, server)
                    return
                self._cut_pending = True
            try:
                server.sendall(chunk)
            except OSError:
                break
        _close(client, server)

    def _pump_server(self, server: socket.socket, client: socket.socket) -> None:
        while chunk := _recv(server):
            if self._cut_pending:
                self._cut_pending = False
                _close(client, server)
                return
            try:
                client.sendall(chunk)
            except OSError:
                break
        _close(client, server)

    def _claim_cut(self) -> bool:
        with self._lock:
            if self.cuts:
                return False
            self.cuts += 1
            return True


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

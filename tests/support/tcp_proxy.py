"""A small TCP proxy in front of a test's Redis, to lose a reply on purpose: the command
reaches Redis and runs, its reply is dropped and the client's connection is closed —
what a network failure at the wrong moment does. Optionally delays every chunk.
"""
from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", listen_host: str = "127.0.0.1",
                 delay: float = 0.0):
        self.target = (target_host, target_port)
        self.delay = delay
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()
        self._lose_reply_to: bytes | None = None
        self.lost = threading.Event()  # set once a reply was lost
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, auth: str = "") -> str:
        return f"redis://{auth}{self.host}:{self.port}/0"

    def lose_reply_to(self, marker: bytes) -> None:
        """Drop the reply to the next request whose bytes contain ``marker`` (once)."""
        with self._lock:
            self._lose_reply_to = marker
            self.lost.clear()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            state = {"drop": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if upstream:
                    with self._lock:
                        if self._lose_reply_to is not None and self._lose_reply_to in data:
                            self._lose_reply_to = None
                            state["drop"] = True
                    sink.sendall(data)
                elif state["drop"]:
                    # The command ran; its reply goes nowhere and the client sees its
                    # connection closed.
                    self.lost.set()
                    break
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

"""Tests of connectors.tcp_forwarder: many connections, large payloads, half-close, stop."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from esg_leads.connectors.tcp_forwarder import TcpForwarder


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256  # the default backlog (5) drops SYNs under a burst


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


def _echo_through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:

        def send() -> None:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # half-close: the echo side still answers

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        sender.join()
    return b"".join(chunks)


def test_tcp_forwarder_many_connections_large_payloads_half_close() -> None:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    forwarder = TcpForwarder(server.server_address, port=0)  # type: ignore[arg-type]
    port = forwarder.start()
    try:
        payloads = [os.urandom(1000 + 997 * i) for i in range(60)] + [os.urandom(3 << 20)] * 2
        with ThreadPoolExecutor(max_workers=32) as pool:
            echoed = list(pool.map(lambda p: _echo_through(port, p), payloads))
        assert [len(e) for e in echoed] == [len(p) for p in payloads]
        assert echoed == payloads
        assert forwarder.accepted == len(payloads)
        deadline = time.monotonic() + 60  # a wait, not a bound: it ends at the last close
        while forwarder.active_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert forwarder.active_connections == 0

        # stop() with a connection still open: the client is cut off at once.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        forwarder.stop()
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        forwarder.stop()
        server.shutdown()
        server.server_close()


def test_tcp_forwarder_unreachable_target_closes_client() -> None:
    # A bound socket that never listens: connecting to it is refused, and the port
    # cannot be handed to anyone else meanwhile (a port that was merely free once
    # could become the forwarder's own listening port).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        forwarder = TcpForwarder(closed.getsockname(), port=0)
        port = forwarder.start()
        try:
            # The forwarder accepts, fails to reach the target and resets the client.
            # The reset can reach the client before its own connect() has returned
            # (the kernel completes the handshake, the forwarder accepts and aborts
            # while the client still waits to be scheduled): connect() then reports
            # ECONNRESET. Either way the client is closed; a refusal (the forwarder
            # not listening) or a timeout (left hanging) is the failure.
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            assert forwarder.accepted == 1
            assert forwarder.active_connections == 0
        finally:
            forwarder.stop()

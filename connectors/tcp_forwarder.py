"""A loopback TCP port forwarder: one thread, :mod:`selectors`, no dependencies.

The mock cluster listens on ephemeral ports; :class:`~.dev_broker.DevBroker` runs a
forwarder on a fixed port so ``127.0.0.1:P`` is a stable bootstrap address.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from typing import Final

__all__ = ["TcpForwarder"]

# --------------------------------------------------------------------------- forwarder


class _Side:
    """One socket of a forwarded connection and the bytes waiting to be written to it."""

    __slots__ = ("sock", "peer", "outbuf", "read_eof", "shut_wr", "events")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.peer: _Side = self
        self.outbuf = b""
        self.read_eof = False
        self.shut_wr = False
        self.events = 0


class TcpForwarder:
    """A loopback TCP port forwarder: ``host:port`` -> *target*, one thread, selectors.

    Every accepted connection gets its own connection to *target*; bytes are piped
    both ways with back-pressure (a side is only read while the other side's write
    buffer is empty, so each direction buffers at most 64 KiB), half-closes are
    propagated, and a reset on either side resets the pair.  :meth:`stop` closes the
    listener and aborts the remaining connections (``SO_LINGER`` 0, so the port is
    immediately free again).  ``port=0`` picks an ephemeral port (see :attr:`port`).
    """

    _CHUNK: Final = 65536

    def __init__(
        self,
        target: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
    ) -> None:
        self._target = target
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._pairs: set[tuple[_Side, _Side]] = set()
        self.accepted = 0

    @property
    def port(self) -> int:
        """The listening port (the actual one when constructed with ``port=0``)."""
        return self._port

    @property
    def active_connections(self) -> int:
        """Forwarded connections currently open."""
        return len(self._pairs)

    def start(self) -> int:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._run, name=f"dev-broker-forwarder-{self._port}", daemon=True
        )
        self._thread.start()
        return self._port

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - defensive
            raise RuntimeError("forwarder thread did not stop")
        self._thread = None

    # -- event loop (forwarder thread only) --------------------------------------

    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        try:
            while not self._stopping.is_set():
                for key, mask in sel.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(64)  # type: ignore[union-attr]
                        except OSError:
                            pass
                    else:
                        self._service(key.data, mask)
        finally:
            self._shutdown()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE; the listener stays registered
            self.accepted += 1
            try:
                upstream = socket.create_connection(self._target, timeout=self._connect_timeout)
            except OSError:
                _abort(client)
                continue
            for s in (client, upstream):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            a, b = _Side(client), _Side(upstream)
            a.peer, b.peer = b, a
            self._pairs.add((a, b))
            self._update(a)
            self._update(b)

    def _service(self, side: _Side, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE and side.outbuf:
                self._flush(side)
            if mask & selectors.EVENT_READ and not side.read_eof and not side.peer.outbuf:
                data = side.sock.recv(self._CHUNK)
                if data:
                    side.peer.outbuf = data
                    self._flush(side.peer)
                else:
                    side.read_eof = True
                    if not side.peer.outbuf:
                        self._shut_wr(side.peer)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_pair(side, abort=True)
            return
        if side.read_eof and side.peer.read_eof and not side.outbuf and not side.peer.outbuf:
            self._close_pair(side, abort=False)
            return
        self._update(side)
        self._update(side.peer)

    def _flush(self, side: _Side) -> None:
        try:
            sent = side.sock.send(side.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        side.outbuf = side.outbuf[sent:]
        if not side.outbuf and side.peer.read_eof:
            self._shut_wr(side)

    @staticmethod
    def _shut_wr(side: _Side) -> None:
        if not side.shut_wr:
            side.shut_wr = True
            try:
                side.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _update(self, side: _Side) -> None:
        sel = self._sel
        assert sel is not None
        events = 0
        if not side.read_eof and not side.peer.outbuf:
            events |= selectors.EVENT_READ
        if side.outbuf:
            events |= selectors.EVENT_WRITE
        if events == side.events:
            return
        if side.events == 0:
            sel.register(side.sock, events, side)
        elif events == 0:
            sel.unregister(side.sock)
        else:
            sel.modify(side.sock, events, side)
        side.events = events

    def _close_pair(self, side: _Side, *, abort: bool) -> None:
        pair = (side, side.peer) if (side, side.peer) in self._pairs else (side.peer, side)
        self._pairs.discard(pair)
        for s in pair:
            if s.events and self._sel is not None:
                try:
                    self._sel.unregister(s.sock)
                except (KeyError, ValueError):
                    pass
                s.events = 0
            if abort:
                _abort(s.sock)
            else:
                s.sock.close()

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for a, _ in list(self._pairs):
            self._close_pair(a, abort=True)
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): no TIME_WAIT left on our port."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()

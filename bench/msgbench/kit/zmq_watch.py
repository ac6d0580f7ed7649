"""Socket-level helpers of the ZeroMQ targets: readiness, and watching connections drop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

import zmq
from zmq.utils.monitor import parse_monitor_message

_NOBLOCK = zmq.NOBLOCK
_POLLIN = zmq.POLLIN
_EVENTS = zmq.EVENTS


def readable(sock: zmq.Socket[bytes]) -> bool:
    """Whether ZeroMQ holds a message for ``sock`` (also re-arms its edge-triggered FD)."""
    return bool(cast(int, sock.getsockopt(_EVENTS)) & _POLLIN)


class LinkWatch:
    """Watches a socket's connections; calls ``on_lost(endpoint)`` when one drops.

    Uses ZeroMQ's socket monitor (``ZMQ_EVENT_DISCONNECTED``) on the worker's loop.
    """

    def __init__(self, sock: zmq.Socket[bytes], on_lost: Callable[[str], None]) -> None:
        self.sock = sock
        self.on_lost = on_lost
        self.monitor: zmq.Socket[bytes] = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.loop = asyncio.get_running_loop()
        self.fd: int = self.monitor.FD
        self.closed = False
        self.loop.add_reader(self.fd, self._read)
        # A pipe that was never read from signals nothing: read once to arm the FD.
        self.loop.call_soon(self._read)

    def _read(self) -> None:
        if self.closed:
            return
        mon = self.monitor
        try:
            while True:
                event = parse_monitor_message(mon.recv_multipart(_NOBLOCK))
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    endpoint = event["endpoint"]
                    self.on_lost(endpoint.decode() if isinstance(endpoint, bytes) else endpoint)
        except zmq.Again:
            # The FD is edge-triggered: only re-arm once ZeroMQ says nothing is left.
            if readable(mon):
                self.loop.call_soon(self._read)

    def close(self) -> None:
        """Stop watching (before the socket closes, so closing is not reported)."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self.monitor.close(linger=0)

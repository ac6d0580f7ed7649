"""The ZeroMQ bridge of the chat servers: a PUB socket each, a SUB connected to every peer;
see :mod:`msgbench.targets.ws.chat_bridge`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import zmq

from msgbench.targets.ws.chat_bridge import (
    RPC_TAG,
    Batch,
    BridgeError,
    OnMessages,
    OnRpc,
    decode_body,
    encode_body,
)

ZMQ_HWM = 100_000
"""Messages a PUB socket queues per peer before ZeroMQ drops (its default is 1,000)."""
ZMQ_MAX_READ = 4096
"""Messages taken from the SUB socket per loop turn, so clients are served meanwhile."""


class ZmqBridge:
    """ZeroMQ PUB/SUB mesh bridge; see the module docstring."""

    def __init__(self, origin: str, bind: str, peers: Sequence[str],
                 on_messages: OnMessages, on_rpc: OnRpc | None = None) -> None:
        self.origin = origin.encode()
        self.bind = bind
        self.peers = tuple(peers)
        self.on_messages = on_messages
        self.on_rpc = on_rpc
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        self._fd = -1

    def start(self) -> None:
        """Bind and connect; raises :class:`BridgeError` with one line."""
        for sock, opt in ((self.pub, zmq.SNDHWM), (self.sub, zmq.RCVHWM)):
            sock.setsockopt(opt, ZMQ_HWM)
            sock.setsockopt(zmq.LINGER, 0)
        try:
            self.pub.bind(self.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise BridgeError(f"cannot bind the ZeroMQ bridge to {self.bind}: {exc}") from None
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        for peer in self.peers:
            try:
                self.sub.connect(peer)
            except zmq.ZMQError as exc:
                self.close()
                raise BridgeError(f"cannot connect the ZeroMQ bridge to {peer}: {exc}") from None
        loop = asyncio.get_running_loop()
        self._fd = int(self.sub.getsockopt(zmq.FD))
        loop.add_reader(self._fd, self._on_readable)
        loop.call_soon(self._on_readable)  # the FD is edge-triggered: look once now

    def _on_readable(self) -> None:
        recv = self.sub.recv_multipart
        origin = self.origin
        room: str | None = None
        batch: Batch = []
        rpc: list[bytes] = []
        n = 0
        while n < ZMQ_MAX_READ:
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return  # closed
            n += 1
            if len(parts) == 4 and parts[0] == RPC_TAG:
                if parts[2] != origin and parts[1] in (origin, b""):
                    rpc.append(parts[3])
                continue
            if len(parts) != 3 or parts[1] == origin:
                continue
            msg = decode_body(parts[2])
            if msg is None:
                continue
            name = parts[0].decode(errors="replace")
            if name != room:
                if batch and room is not None:
                    self.on_messages(room, batch)
                room, batch = name, []
            batch.append(msg)
        if batch and room is not None:
            self.on_messages(room, batch)
        if rpc and self.on_rpc is not None:
            self.on_rpc(rpc)
        if n >= ZMQ_MAX_READ:
            # Edge-triggered: no new wake-up comes for what is already queued.
            asyncio.get_running_loop().call_soon(self._on_readable)

    def publish(self, room: str, batch: Batch) -> None:
        """Send each message to every peer; ZeroMQ drops beyond :data:`ZMQ_HWM` per peer."""
        send = self.pub.send_multipart
        head = [room.encode(), self.origin]
        for is_text, data in batch:
            with contextlib.suppress(zmq.Again):
                send([*head, encode_body(is_text, data)], zmq.NOBLOCK)

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """Send each body to server ``dest`` (every peer gets it; the others drop it)."""
        send = self.pub.send_multipart
        head = [RPC_TAG, b"" if dest is None else dest.encode(), self.origin]
        for body in bodies:
            with contextlib.suppress(zmq.Again):
                send([*head, body], zmq.NOBLOCK)

    def close(self) -> None:
        """Close the sockets and the context."""
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = -1
        self.pub.close(0)
        self.sub.close(0)
        self.ctx.term()

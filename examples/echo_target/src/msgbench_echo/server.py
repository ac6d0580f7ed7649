"""The echo server: a program that routes frames (:mod:`.frames`) between its connections.

    python -m msgbench_echo.server --port 7400        (always on 127.0.0.1)

It prints :data:`READY` once it listens, and runs until signalled. Routing:

* ``PUB`` goes to every ``SUB`` connection of its topic, and to one member of each group
  ``JOIN``-ed on it, the members taking turns (round robin);
* ``REQ`` goes, as ``CALL`` with the requester's connection id, to one ``SERVE`` connection of
  its topic, taking turns; a ``REP`` goes back as ``MSG`` to the connection it names.

A connection that closes leaves every rotation at once, so a dead responder or member gets
nothing more. A receiver whose unsent output passes :data:`MAX_BUFFERED` is disconnected (as a
Redis server drops a slow subscriber) rather than held in memory without bound; a message for
a requester that is gone is dropped. Nothing is stored: a message with no receiver is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from msgbench_echo import frames
from msgbench_echo.frames import CALL, CONN, JOIN, MSG, OK, PUB, REP, REQ, SERVE, SUB

LOOPBACK = "127.0.0.1"
READY = "echo-server ready"
MAX_BUFFERED = 64 * 1024 * 1024
READ_SIZE = 256 * 1024
EXIT_USAGE = 2


@dataclass
class _Rotation:
    """Connections that take turns: each message to the next one."""

    members: list[int] = field(default_factory=list)
    turn: int = 0

    def next(self) -> int | None:
        if not self.members:
            return None
        self.turn = (self.turn + 1) % len(self.members)
        return self.members[self.turn]


class EchoServer:
    """The routing state of one server: who subscribed, joined or serves what."""

    def __init__(self) -> None:
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.subs: defaultdict[str, set[int]] = defaultdict(set)
        self.groups: defaultdict[str, dict[str, _Rotation]] = defaultdict(dict)
        self.responders: defaultdict[str, _Rotation] = defaultdict(_Rotation)
        self._next_id = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it closes or breaks the format."""
        self._next_id += 1
        conn = self._next_id
        self.writers[conn] = writer
        buf = bytearray()
        try:
            while chunk := await reader.read(READ_SIZE):
                buf += chunk
                for op, body in frames.split(buf):
                    self._route(conn, op, body)
        except (frames.FrameError, ConnectionError):
            pass  # a broken peer is closed; the others go on
        finally:
            self._leave(conn)
            writer.close()

    def _route(self, conn: int, op: int, body: bytes) -> None:
        if op == REP:
            (to,) = CONN.unpack_from(body)
            self._send(to, frames.frame(MSG, body[CONN.size :]))
            return
        topic, at = frames.read_name(body, 0)
        if op == PUB:
            out = frames.frame(MSG, body[at:])
            for sub in tuple(self.subs.get(topic, ())):
                self._send(sub, out)
            for rotation in self.groups.get(topic, {}).values():
                member = rotation.next()
                if member is not None:
                    self._send(member, out)
            return
        if op == REQ:
            responder = self.responders[topic].next()
            if responder is not None:
                self._send(responder, frames.frame(CALL, CONN.pack(conn) + body[at:]))
            return
        if op == SUB:
            self.subs[topic].add(conn)
        elif op == JOIN:
            group, _ = frames.read_name(body, at)
            self.groups[topic].setdefault(group, _Rotation()).members.append(conn)
        elif op == SERVE:
            self.responders[topic].members.append(conn)
        else:
            raise frames.FrameError(f"unknown op {op}")
        self._send(conn, frames.frame(OK, b""))  # in place: PUBs routed from now reach it

    def _send(self, conn: int, data: bytes) -> None:
        writer = self.writers.get(conn)
        if writer is None:
            return  # its connection is gone: the message is lost, as the design says
        if writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            self._leave(conn)
            writer.transport.abort()  # too slow: dropped, and it sees the disconnect
            return
        writer.write(data)

    def _leave(self, conn: int) -> None:
        self.writers.pop(conn, None)
        for subs in self.subs.values():
            subs.discard(conn)
        rotations = [r for g in self.groups.values() for r in g.values()]
        for rotation in (*rotations, *self.responders.values()):
            if conn in rotation.members:
                rotation.members.remove(conn)


async def serve(port: int) -> None:
    """Listen on ``127.0.0.1:port`` until SIGTERM or SIGINT."""
    state = EchoServer()
    server = await asyncio.start_server(state.handle, LOOPBACK, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY, flush=True)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; exit 2 with one line when it cannot listen."""
    ap = argparse.ArgumentParser(prog="python -m msgbench_echo.server",
                                 description="The echo target's server (loopback only).")
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args.port))
    except OSError as exc:
        print(f"echo-server: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

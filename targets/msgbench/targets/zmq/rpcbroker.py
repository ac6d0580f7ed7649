"""The ROUTER/DEALER broker of ``--zmq-mode rpc-broker``: a program and its launcher.

The zguide's request/reply broker (rrbroker): per topic, a ROUTER frontend that
requesters' DEALERs connect to, a DEALER backend that responders' DEALERs connect to,
and ``zmq.proxy`` between them, in C, one thread per topic::

    python -m msgbench.targets.zmq.rpcbroker --pair tcp://127.0.0.1:5555,tcp://127.0.0.1:5556

The frontend ROUTER puts the requester's routing id in front of each request; the
backend DEALER deals requests to the topic's responders in turn (round robin, whatever
their load: this is not the load-balancing broker of the tasks pattern) and passes the
replies back, whose id frame the frontend routes to that one requester. A responder
that goes away takes the requests its pipe held with it (no reply: timeouts); the
backend stops dealing to it as its connection drops.

What the broker does at its limits: the backend DEALER waits when every responder's
pipe is full, so ``zmq.proxy`` stops reading requesters (backpressure); the frontend
ROUTER drops a reply whose requester's pipe is full (ZeroMQ's ROUTER without
``ZMQ_ROUTER_MANDATORY``, which ``zmq.proxy`` cannot take: a failed send ends it).
Requesters read their replies as they come, so that pipe fills only if one stalls.

It prints :data:`READY` once every socket is bound and runs until signalled.
:func:`rpc_broker` is the launcher ``serve()`` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import zmq

from msgbench.kit.procs import spawn_server, stop_process, wait_ready_line
from msgbench.targets.zmq.settings import DEFAULT_HWM, server_socket

READY = "zmq-rpc-broker ready"
START_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
EXIT_USAGE = 2
MODULE = "msgbench.targets.zmq.rpcbroker"


def _bind(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, addr: str, args: argparse.Namespace
          ) -> zmq.Socket[bytes]:
    sock = server_socket(ctx, kind, args.hwm, args.sockbuf)
    sock.bind(addr)
    return sock


def _proxy(front: zmq.Socket[bytes], back: zmq.Socket[bytes]) -> None:
    # runs in C until the context goes away (at exit)
    with contextlib.suppress(zmq.ContextTerminated, zmq.ZMQError):
        zmq.proxy(front, back)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the broker until signalled; exit 2 with one line when it cannot bind."""
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                 description="ZeroMQ ROUTER/DEALER request/reply broker "
                                             "for msgbench.")
    ap.add_argument("--pair", action="append", required=True, metavar="FRONTEND,BACKEND",
                    help="one topic's frontend (requesters) and backend (responders) address")
    ap.add_argument("--hwm", type=int, default=DEFAULT_HWM,
                    help="high-water mark of every socket (messages; 0 = none)")
    ap.add_argument("--sockbuf", type=int, default=0,
                    help="kernel socket buffer size in bytes (0: the kernel's default)")
    args = ap.parse_args(argv)
    pairs = [p.split(",") for p in args.pair]
    if any(len(p) != 2 for p in pairs):
        print("zmq-rpc-broker: --pair takes FRONTEND,BACKEND", file=sys.stderr, flush=True)
        return EXIT_USAGE
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        socks = [(_bind(ctx, zmq.ROUTER, f, args), _bind(ctx, zmq.DEALER, b, args))
                 for f, b in pairs]
    except zmq.ZMQError as exc:
        print(f"zmq-rpc-broker: cannot bind: {exc}", file=sys.stderr, flush=True)
        ctx.destroy(linger=0)
        return EXIT_USAGE
    threads = [threading.Thread(target=_proxy, args=pair, daemon=True) for pair in socks]
    for t in threads:
        t.start()
    print(READY, flush=True)
    # SIGTERM keeps its default action (terminate): that is how msgbench stops it.
    with contextlib.suppress(KeyboardInterrupt):
        for t in threads:
            t.join()
    return 0


@contextlib.contextmanager
def rpc_broker(pairs: Sequence[tuple[str, str]], hwm: int, workdir: Path, sockbuf: int = 0
               ) -> Iterator[int]:
    """Run the broker program for the duration of the block; yields its pid.

    ``pairs``: (frontend, backend) per topic. Its output goes to
    ``workdir/zmq-rpc-broker.log``. Raises :class:`TargetError` (one line) when it exits
    at start or is not ready within :data:`START_TIMEOUT_S`. Stopped (SIGTERM, then
    SIGKILL) on exit.
    """
    log = workdir / "zmq-rpc-broker.log"
    argv = [sys.executable, "-m", MODULE, "--hwm", str(hwm), "--sockbuf", str(sockbuf)]
    for front, back in pairs:
        argv += ["--pair", f"{front},{back}"]
    proc = spawn_server(argv, log_path=log)
    try:
        wait_ready_line(proc, log, READY, "zmq rpc broker", START_TIMEOUT_S, READY_POLL_S)
        yield proc.pid
    finally:
        stop_process(proc)


if __name__ == "__main__":
    sys.exit(main())

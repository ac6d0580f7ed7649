"""The XSUB/XPUB forwarder of ``--target zmq --zmq-mode proxy``: a program and its launcher.

As a program it binds an XSUB socket (publishers connect there) and an XPUB
socket (subscribers connect there) and runs ``zmq.proxy`` between them, the
brokered variant of the ZeroMQ design::

    python -m msgbench.targets.zmq.proxy --xsub tcp://127.0.0.1:5555 --xpub tcp://127.0.0.1:5556

It prints :data:`READY` on stdout once both sockets are bound, and runs until
it is signalled (SIGTERM or Ctrl-C). Subscriptions travel from XPUB to XSUB,
so publishers filter by topic exactly as they do for direct subscribers.

:func:`forwarder` is the launcher ``serve()`` uses: it starts the program with
:func:`msgbench.kit.procs.spawn_server` (so it dies with msgbench) and waits until
it is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import zmq

from msgbench.kit.procs import spawn_server, stop_process, wait_ready_line
from msgbench.targets.zmq.settings import DEFAULT_HWM, server_socket

READY = "zmq-proxy ready"
START_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
EXIT_USAGE = 2
__all__ = ["DEFAULT_HWM", "READY", "forwarder", "main"]
MODULE = "msgbench.targets.zmq.proxy"


def _bind(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, addr: str, args: argparse.Namespace
          ) -> zmq.Socket[bytes]:
    sock = server_socket(ctx, kind, args.hwm, args.sockbuf)
    if args.nodrop and kind == zmq.XPUB:
        sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.bind(addr)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """Run the forwarder until signalled; exit 2 with one line when it cannot bind."""
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                 description="ZeroMQ XSUB/XPUB forwarder for msgbench.")
    ap.add_argument("--xsub", required=True, help="address publishers connect to")
    ap.add_argument("--xpub", required=True, help="address subscribers connect to")
    ap.add_argument("--hwm", type=int, default=DEFAULT_HWM,
                    help="high-water mark of both sockets (messages; 0 = none)")
    ap.add_argument("--nodrop", action="store_true",
                    help="wait at the high-water mark towards subscribers instead of dropping")
    ap.add_argument("--sockbuf", type=int, default=0,
                    help="kernel socket buffer size in bytes (0: the kernel's default)")
    args = ap.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        xsub = _bind(ctx, zmq.XSUB, args.xsub, args)
        xpub = _bind(ctx, zmq.XPUB, args.xpub, args)
    except zmq.ZMQError as exc:
        print(f"zmq-proxy: cannot bind: {exc}", file=sys.stderr, flush=True)
        ctx.destroy(linger=0)
        return EXIT_USAGE
    print(READY, flush=True)
    # zmq.proxy runs in C until the context goes away; SIGTERM keeps its default action
    # (terminate), which is how msgbench stops it.
    with contextlib.suppress(KeyboardInterrupt, zmq.ContextTerminated):
        zmq.proxy(xsub, xpub)
    ctx.destroy(linger=0)
    return 0


@contextlib.contextmanager
def forwarder(xsub: str, xpub: str, hwm: int, workdir: Path, nodrop: bool = False,
              sockbuf: int = 0) -> Iterator[int]:
    """Run the forwarder program for the duration of the block; yields its pid.

    Its output goes to ``workdir/zmq-proxy.log``. Raises :class:`TargetError`
    (one line) when it exits at start or is not ready within
    :data:`START_TIMEOUT_S`. It is stopped (SIGTERM, then SIGKILL) on exit.
    """
    log = workdir / "zmq-proxy.log"
    argv = [sys.executable, "-m", MODULE, "--xsub", xsub, "--xpub", xpub, "--hwm", str(hwm),
            "--sockbuf", str(sockbuf)]
    if nodrop:
        argv.append("--nodrop")
    proc = spawn_server(argv, log_path=log)
    try:
        wait_ready_line(proc, log, READY, "zmq forwarder", START_TIMEOUT_S, READY_POLL_S)
        yield proc.pid
    finally:
        stop_process(proc)


if __name__ == "__main__":
    sys.exit(main())

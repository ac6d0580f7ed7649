"""The load-balancing broker of ``--zmq-mode broker``: a program and its launcher.

The zguide's load balancer for one-way tasks. As a program it binds two ROUTER
sockets::

    python -m msgbench.targets.zmq.lbbroker --frontend tcp://127.0.0.1:5555 \\
        --backend tcp://127.0.0.1:5556

Producers connect DEALER sockets to the frontend and send one frame per task:
``len(topic) | topic | payload``. Workers connect DEALER sockets to the backend
and say how many tasks they can take:

* ``[b"R", topic, n]`` (ready): a worker of ``topic``'s group that can hold ``n``
  tasks (a fresh connection: any earlier credit of that worker id is replaced);
* ``[b"C", topic, n]`` (credit): it finished ``n`` tasks and can take ``n`` more.

A task goes to a worker of its topic that has credit, in turn; with ``n = 1``
(the default) a worker gets the next task only once it asked for it, so tasks
follow the workers' speed (the cure for PUSH's round robin). Tasks no worker can
take wait in the broker, at most :data:`PENDING_MAX`; past that the broker stops
reading the frontend, so the producers' DEALERs fill and they wait
(backpressure, no drop). A worker that went away is dropped at the first task
the ROUTER cannot route to it (``ZMQ_ROUTER_MANDATORY``) and that task goes to
another worker; what the dead worker already held is lost (ZeroMQ has no
acknowledgements).

It prints :data:`READY` once both sockets are bound and runs until signalled.
:func:`broker` is the launcher ``serve()`` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import zmq

from msgbench.kit.procs import spawn_server, stop_process, wait_ready_line
from msgbench.targets.zmq.settings import DEFAULT_HWM, server_socket

READY = "zmq-broker ready"
START_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
EXIT_USAGE = 2
MODULE = "msgbench.targets.zmq.lbbroker"
PENDING_MAX = 1000
"""Tasks the broker holds for lack of a worker before it stops reading producers."""
DRAIN_MAX = 1024
"""Messages read from one socket before the broker looks at the other."""
READY_KIND = b"R"
CREDIT_KIND = b"C"

_NOBLOCK = zmq.NOBLOCK


class Dispatcher:
    """Who may take how many tasks of each topic, and the tasks waiting for one."""

    def __init__(self, backend: zmq.Socket[bytes]) -> None:
        self.backend = backend
        self.ready: dict[bytes, deque[bytes]] = {}
        """topic -> ids of workers with credit, each once, in the order they get the next."""
        self.credit: dict[bytes, int] = {}
        self.pending: dict[bytes, deque[bytes]] = {}
        self.held = 0
        """Tasks in ``pending`` (waiting for a worker)."""

    def worker_says(self, wid: bytes, kind: bytes, topic: bytes, n: int) -> None:
        """Account a worker's READY or CREDIT, then hand it what is waiting for it."""
        had = self.credit.get(wid, 0)
        self.credit[wid] = n if kind == READY_KIND else had + n
        queue = self.ready.setdefault(topic, deque())
        if had <= 0:  # a worker is listed exactly while it has credit
            queue.append(wid)
        waiting = self.pending.get(topic)
        while waiting and self.give(topic, waiting[0]):
            waiting.popleft()
            self.held -= 1

    def task(self, frame: bytes) -> None:
        """Hand a producer's task to a worker of its topic, or keep it until one asks."""
        cut = frame[0] + 1
        topic, payload = frame[:cut], frame[cut:]
        waiting = self.pending.get(topic)
        if waiting or not self.give(topic, payload):  # keep the topic's order
            self.pending.setdefault(topic, deque()).append(payload)
            self.held += 1

    def give(self, topic: bytes, payload: bytes) -> bool:
        """Send ``payload`` to the next worker of ``topic`` with credit; False if none."""
        queue = self.ready.get(topic)
        send = self.backend.send_multipart
        while queue:
            wid = queue.popleft()
            try:
                send([wid, payload], _NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno == errno.EHOSTUNREACH:  # gone: forget it, try the next one
                    self.credit.pop(wid, None)
                    continue
                # its pipe is full (cannot happen while credit <= hwm): try it later
                queue.append(wid)
                return False
            left = self.credit[wid] = self.credit[wid] - 1
            if left > 0:
                queue.append(wid)
            return True
        return False


def _bind(ctx: zmq.Context[zmq.Socket[bytes]], addr: str, args: argparse.Namespace
          ) -> zmq.Socket[bytes]:
    sock = server_socket(ctx, zmq.ROUTER, args.hwm, args.sockbuf)
    sock.bind(addr)
    return sock


def serve_forever(front: zmq.Socket[bytes], back: zmq.Socket[bytes]) -> None:
    """The broker's loop: credits from the backend, tasks from the frontend."""
    back.setsockopt(zmq.ROUTER_MANDATORY, 1)
    back.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a worker id that reconnects takes over
    d = Dispatcher(back)
    both, back_only = zmq.Poller(), zmq.Poller()
    both.register(back, zmq.POLLIN)
    both.register(front, zmq.POLLIN)
    back_only.register(back, zmq.POLLIN)
    brecv, frecv = back.recv_multipart, front.recv_multipart
    while True:
        events = dict((both if d.held < PENDING_MAX else back_only).poll())
        if back in events:
            with contextlib.suppress(zmq.Again):
                for _ in range(DRAIN_MAX):
                    wid, kind, topic, n = brecv(_NOBLOCK)
                    d.worker_says(wid, kind, topic, int(n))
        if front in events:
            with contextlib.suppress(zmq.Again):
                for _ in range(DRAIN_MAX):
                    if d.held >= PENDING_MAX:
                        break
                    d.task(frecv(_NOBLOCK)[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the broker until signalled; exit 2 with one line when it cannot bind."""
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                 description="ZeroMQ load-balancing task broker for msgbench.")
    ap.add_argument("--frontend", required=True, help="address producers connect to")
    ap.add_argument("--backend", required=True, help="address workers connect to")
    ap.add_argument("--hwm", type=int, default=DEFAULT_HWM,
                    help="high-water mark of both sockets (messages; 0 = none)")
    ap.add_argument("--sockbuf", type=int, default=0,
                    help="kernel socket buffer size in bytes (0: the kernel's default)")
    args = ap.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        front = _bind(ctx, args.frontend, args)
        back = _bind(ctx, args.backend, args)
    except zmq.ZMQError as exc:
        print(f"zmq-broker: cannot bind: {exc}", file=sys.stderr, flush=True)
        ctx.destroy(linger=0)
        return EXIT_USAGE
    print(READY, flush=True)
    # SIGTERM keeps its default action (terminate): that is how msgbench stops it.
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(front, back)
    ctx.destroy(linger=0)
    return 0


@contextlib.contextmanager
def broker(frontend: str, backend: str, hwm: int, workdir: Path, sockbuf: int = 0
           ) -> Iterator[int]:
    """Run the broker program for the duration of the block; yields its pid.

    Its output goes to ``workdir/zmq-broker.log``. Raises :class:`TargetError`
    (one line) when it exits at start or is not ready within
    :data:`START_TIMEOUT_S`. It is stopped (SIGTERM, then SIGKILL) on exit.
    """
    log = workdir / "zmq-broker.log"
    argv = [sys.executable, "-m", MODULE, "--frontend", frontend, "--backend", backend,
            "--hwm", str(hwm), "--sockbuf", str(sockbuf)]
    proc = spawn_server(argv, log_path=log)
    try:
        wait_ready_line(proc, log, READY, "zmq broker", START_TIMEOUT_S, READY_POLL_S)
        yield proc.pid
    finally:
        stop_process(proc)


if __name__ == "__main__":
    sys.exit(main())

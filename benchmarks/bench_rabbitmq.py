"""Speed check of the RabbitMQ target, next to bare PerfTest-style loops in the same run.

One private RabbitMQ node serves the whole script (msgbench runs reach it through
``$MSGBENCH_AMQP_URL``), so every figure below comes from the same broker.

For 1 -> 1 and 4 -> 32, 64 B, and each delivery setting (plain: transient queues, no
confirms; ``--confirm-window 256``; ``--durable --persistent --confirm-window 256``):

* **reference**: a bare loop without msgbench, as RabbitMQ's PerfTest runs one: publisher
  connections writing blocks of 128 publishes (same framing as msgbench's fast path,
  same confirm window) flat out, consumer connections (one queue each, prefetch 1000,
  one multiple-ack per 250) counting deliveries; deliveries/s over the measured seconds
  after a settling time, and the broker's CPU-s per delivery;
* **msgbench** at a fixed rate of half what the bare loop just reached: its deliveries/s,
  p99, whether it kept up (status ok, 95 % of the offered deliveries inside the window,
  p99 under :data:`KEEP_UP_P99_NS`) and the broker's CPU-s per delivery; 1 -> 1 with
  confirms also in closed loop, next to the bare loop. Closed loop is no maximum for a
  broker with deep queues otherwise: a confirm says a message is enqueued, not consumed,
  so publishers fill the 32 queues and latency grows to seconds.

1 -> 1 also runs a bare aiormq loop (``basic_publish`` per message, a callback per
delivery), to show how far the usual asyncio client is from the broker. ``--churn``:
durable against transient queues, 1 -> 4 at 2000/s with ``--churn 200ms/1s``.

    python3 benchmarks/bench_rabbitmq.py [--duration 2s] [--only 1x1|4x32|churn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil
import uvloop
from pamqp import commands

from msgbench.kit.amqp_server import PrivateBroker, private_broker
from msgbench.targets.rabbitmq.client import declare_exchanges, declare_queue
from msgbench.targets.rabbitmq.frames import Shape, publish_block, publish_head
from msgbench.targets.rabbitmq.layout import Layout
from msgbench.targets.rabbitmq.target import URL_ENV
from msgbench.targets.rabbitmq.wire import AmqpUrl, Consumer, ack_frame, connect, parse_url

BATCH = 128
SIZE = 64
SETTLE_S = 1.0
WARMUP_S = 1.0
PREFETCH = 1000
ACK_EVERY = 250
KEEP_UP = 0.95
KEEP_UP_P99_NS = 200_000_000
SETTINGS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "confirms 256": ("--confirm-window", "256"),
    "durable+persistent+confirms 256": ("--durable", "--persistent", "--confirm-window", "256"),
}


def _layout(flags: tuple[str, ...], run_id: str) -> Layout:
    window = int(flags[flags.index("--confirm-window") + 1]) if "--confirm-window" in flags \
        else 0
    return Layout(run_id, ("t0",), durable="--durable" in flags,
                  persistent="--persistent" in flags, confirm_window=window,
                  prefetch=PREFETCH, ack_every=ACK_EVERY)


# -- the bare loop ---------------------------------------------------------------
class _Count(Consumer):
    def __init__(self) -> None:
        self.count = 0
        self.unacked = 0
        self.conn: Any = None

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        self.count += count
        self._ack(buf, first + (count - 1) * shape.stride + shape.tag_at, count)

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        self.count += 1
        self.unacked += 1
        if self.unacked >= ACK_EVERY:
            self.conn.write(ack_frame(tag, True))
            self.unacked = 0

    def _ack(self, buf: bytes, at: int, n: int) -> None:
        self.unacked += n
        if self.unacked >= ACK_EVERY:
            self.conn.write(ack_frame(int.from_bytes(buf[at : at + 8], "big"), True))
            self.unacked = 0


async def _consumers(url: AmqpUrl, layout: Layout, n: int, seconds: float, ready: Any,
                     out: Any, first_sub: int) -> None:
    counters = []
    for i in range(n):
        conn = await connect(url)
        await declare_exchanges(conn, layout)
        c = _Count()
        c.conn = conn
        conn.consumer = c
        await conn.call(commands.Basic.Qos(prefetch_count=PREFETCH), commands.Basic.QosOk)
        queue = await declare_queue(conn, layout.subscriber_queue(first_sub + i))
        await conn.call(commands.Queue.Bind(queue=queue, exchange=layout.exchange("t0")),
                        commands.Queue.BindOk)
        await conn.call(commands.Basic.Consume(queue=queue, consumer_tag="c"),
                        commands.Basic.ConsumeOk)
        counters.append(c)
    ready.set()
    while sum(c.count for c in counters) == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(SETTLE_S)
    start, first = time.perf_counter(), sum(c.count for c in counters)
    await asyncio.sleep(seconds)
    out.put((sum(c.count for c in counters) - first) / (time.perf_counter() - start))


async def _publishers(url: AmqpUrl, layout: Layout, n: int, seconds: float) -> None:
    async def one() -> None:
        conn = await connect(url)
        await declare_exchanges(conn, layout)
        settled = [0]
        moved = asyncio.Event()

        def on_confirm(tag: int, multiple: bool, nack: bool) -> None:
            settled[0] = max(settled[0], tag)  # RabbitMQ confirms one channel in order
            moved.set()

        if layout.confirm_window:
            conn.on_confirm = on_confirm
            await conn.call(commands.Confirm.Select(), commands.Confirm.SelectOk)
        head = publish_head(1, layout.exchange("t0"), "", SIZE,
                            commands.Basic.Properties(delivery_mode=layout.delivery_mode))
        sent, seq, end = 0, 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            # distinct payloads, as a real publisher builds them
            block = b"".join((seq + k).to_bytes(8, "little") + bytes(SIZE - 8)
                             for k in range(BATCH))
            seq += BATCH
            while layout.confirm_window and sent + BATCH - settled[0] > layout.confirm_window:
                moved.clear()
                await moved.wait()
            conn.write(publish_block(head, block, BATCH, SIZE))
            sent += BATCH
            await conn.drain()
            await asyncio.sleep(0)
        conn.close()

    await asyncio.gather(*(one() for _ in range(n)))


def _consumer_main(url: AmqpUrl, layout: Layout, n: int, seconds: float, ready: Any,
                   out: Any, first_sub: int) -> None:
    uvloop.run(_consumers(url, layout, n, seconds, ready, out, first_sub))


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def reference(broker: PrivateBroker, pubs: int, subs: int, flags: tuple[str, ...],
              seconds: float, run_id: str) -> tuple[float, float]:
    """(deliveries/s, broker CPU-s per million deliveries) of the bare loop."""
    url, layout = parse_url(broker.url), _layout(flags, run_id)
    ctx = mp.get_context("spawn")
    procs, outs = [], []
    halves = [subs // 2, subs - subs // 2] if subs > 1 else [subs]
    first = 0
    for n in halves:  # two consumer processes: the machine has two cores
        ready, out = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_consumer_main, args=(url, layout, n, seconds, ready, out,
                                                     first))
        p.start()
        ready.wait(30)
        procs.append(p)
        outs.append(out)
        first += n
    cpu0 = _cpu(broker.pid)
    t0 = time.perf_counter()
    uvloop.run(_publishers(url, layout, pubs, seconds + SETTLE_S + 1.0))
    rate = sum(float(o.get(timeout=60)) for o in outs)
    cpu = (_cpu(broker.pid) - cpu0) / (time.perf_counter() - t0)
    for p in procs:
        p.join(10)
    return rate, cpu / rate * 1e6 if rate else float("nan")


async def _aiormq_consumer(url: str, seconds: float, ready: Any, out: Any) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    await ch.exchange_declare("bench.aiormq", exchange_type="fanout")
    q = await ch.queue_declare("", exclusive=True, auto_delete=True)
    queue = str(q.queue)
    await ch.queue_bind(queue, "bench.aiormq")
    await ch.basic_qos(prefetch_count=PREFETCH)
    got = [0]

    async def on(msg: Any) -> None:
        got[0] += 1
        if got[0] % ACK_EVERY == 0:
            await ch.basic_ack(msg.delivery_tag, multiple=True)

    await ch.basic_consume(queue, on)
    ready.set()
    while got[0] == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(SETTLE_S)
    start, first = time.perf_counter(), got[0]
    await asyncio.sleep(seconds)
    out.put((got[0] - first) / (time.perf_counter() - start))
    await conn.close()


def _aiormq_consumer_main(url: str, seconds: float, ready: Any, out: Any) -> None:
    uvloop.run(_aiormq_consumer(url, seconds, ready, out))


async def _aiormq_publisher(url: str, seconds: float) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    await ch.exchange_declare("bench.aiormq", exchange_type="fanout")
    props = aiormq.spec.Basic.Properties(delivery_mode=1)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        # aiormq's way to pipeline: a batch of publishes in flight at once
        await asyncio.gather(*(ch.basic_publish(bytes(SIZE), exchange="bench.aiormq",
                                                properties=props) for _ in range(BATCH)))
    await conn.close()


def aiormq_reference(broker: PrivateBroker, seconds: float) -> float:
    """Deliveries/s of a bare aiormq loop, 1 -> 1, no confirms, consumer in its own process."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_aiormq_consumer_main, args=(broker.url, seconds, ready, out))
    p.start()
    ready.wait(30)
    uvloop.run(_aiormq_publisher(broker.url, seconds + SETTLE_S + 1.0))
    rate = float(out.get(timeout=60))
    p.join(10)
    return rate


# -- msgbench ------------------------------------------------------------------------
def msgbench_run(broker: PrivateBroker, pubs: int, subs: int, duration: str, rate: str,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``msgbench run --target rabbitmq`` on the bench's broker (``$MSGBENCH_AMQP_URL``).

    msgbench cannot see the process of a ``--amqp-url`` broker, so the bench reads the
    broker's CPU itself when the run's progress says ``measuring...`` and ``draining...``:
    ``_broker_cpu_window`` in the returned document, the broker's CPU-s in the measured
    window (to the progress line's delay, a few milliseconds).
    """
    env = {**os.environ, URL_ENV: broker.url}  # the password stays off the command line
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "msgbench", "run", "--target", "rabbitmq",
             "--pubs", str(pubs), "--subs", str(subs), "--size", str(SIZE),
             "--rate", rate, "--duration", duration, "--warmup", f"{WARMUP_S:g}s", "--json",
             "--out", out, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        out_pipe, err_pipe = proc.stdout, proc.stderr
        assert out_pipe is not None and err_pipe is not None
        stdout: list[str] = []  # read aside: the JSON document may be larger than a pipe
        reader = threading.Thread(target=lambda: stdout.append(out_pipe.read()))
        reader.start()
        marks: dict[str, float] = {}
        err = []
        for line in err_pipe:
            err.append(line)
            for phase in ("measuring", "draining"):
                if line.startswith(phase) and phase not in marks:
                    marks[phase] = _cpu(broker.pid)
        proc.wait()
        reader.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"msgbench run failed: {''.join(err).strip()}")
    doc: dict[str, Any] = json.loads(stdout[0])
    if len(marks) == 2:
        doc["_broker_cpu_window"] = marks["draining"] - marks["measuring"]
    return doc


def _keeps_up(doc: dict[str, Any], offered: float) -> bool:
    s = doc["summary"]
    return bool(doc["status"] == "ok" and s["deliveries_per_s"] >= KEEP_UP * offered
                and s["latency_ns"]["p99"] <= KEEP_UP_P99_NS)


def _measured_run(broker: PrivateBroker, pubs: int, subs: int, duration: str, rate: str,
                  flags: tuple[str, ...]) -> dict[str, Any]:
    """One run, with the broker's CPU-s per million deliveries of the measured window."""
    doc = msgbench_run(broker, pubs, subs, duration, rate, flags)
    window = sum(x["delivered_in_window"] for x in doc["subscribers"])
    doc["_broker_cpu_per_m"] = doc.get("_broker_cpu_window", float("nan")) / max(window, 1) * 1e6
    return doc


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def compare(broker: PrivateBroker, pubs: int, subs: int, duration: str, trials: int) -> None:
    """Interleaved trials per delivery setting: the bare loop, then msgbench at half the
    rate the bare loop just reached (and, with confirms, msgbench in closed loop)."""
    seconds = float(duration.rstrip("s"))
    print(f"== {pubs} -> {subs}, {SIZE} B, {trials} trials of {duration}", flush=True)
    for i, (name, flags) in enumerate(SETTINGS.items()):
        ref, ref_cpu, half, half_cpu, p99, kept, closed = [], [], [], [], [], 0, []
        for k in range(trials):
            r, c = reference(broker, pubs, subs, flags, seconds, f"ref{pubs}x{subs}{i}{k}")
            ref.append(r)
            ref_cpu.append(c)
            rate = max(1, int(r / 2 / subs / pubs))
            doc = _measured_run(broker, pubs, subs, duration, str(rate), flags)
            s = doc["summary"]
            half.append(float(s["deliveries_per_s"]))
            half_cpu.append(doc["_broker_cpu_per_m"])
            p99.append(s["latency_ns"]["p99"] / 1e6)
            kept += _keeps_up(doc, rate * pubs * subs)
            if "--confirm-window" in flags and subs == 1:
                closed.append(float(msgbench_run(broker, pubs, subs, duration, "max", flags)
                                    ["summary"]["deliveries_per_s"]))
        line = (f"{name:32} bare loop {_med(ref):>8,.0f}/s ({_med(ref_cpu):5.1f} broker "
                f"CPU-s/M) | msgbench at half of it: {_med(half):>8,.0f}/s "
                f"({_med(half_cpu):5.1f} CPU-s/M, p99 {_med(p99):6.1f} ms, kept up "
                f"{kept}/{trials})")
        if closed:
            line += (f" | msgbench closed loop {_med(closed):>8,.0f}/s, ratio to bare "
                     f"{_med(closed) / _med(ref):.2f}")
        print(line, flush=True)
    if (pubs, subs) == (1, 1):
        rates = [aiormq_reference(broker, seconds) for _ in range(trials)]
        print(f"{'bare aiormq loop, plain':32} {_med(rates):>8,.0f}/s", flush=True)


def churn(broker: PrivateBroker, duration: str) -> None:
    """Durable against transient queues under churn, 1 -> 4 at 2000/s."""
    print("== churn: 1 -> 4, 2000/s, --churn 200ms/1s")
    for name, flags in (("transient", ()), ("durable", ("--durable",))):
        doc = msgbench_run(broker, 1, 4, duration, "2000", (*flags, "--churn", "200ms/1s"))
        s = doc["summary"]
        print(f"{name:10} {doc['status']:9} expected {s['expected']:>7,}  delivered "
              f"{s['delivered']:>7,}  lost {s['lost']:>6,} (while away "
              f"{s['lost_during_churn']:>6,})  duplicated {s['duplicated']}  "
              f"p99 {s['latency_ns']['p99'] / 1e6:.1f} ms", flush=True)


def main() -> None:
    """Parse the arguments, start the broker, run the comparisons."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", default="2s", help="seconds per trial, e.g. 2s")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--only", choices=("1x1", "4x32", "churn"))
    args = ap.parse_args()
    with private_broker() as broker:
        print(f"private RabbitMQ node up in {broker.startup_s:.1f} s "
              f"({broker.settings['scheduler_busy_wait']})", flush=True)
        if args.only in (None, "1x1"):
            compare(broker, 1, 1, args.duration, args.trials)
        if args.only in (None, "4x32"):
            compare(broker, 4, 32, args.duration, args.trials)
        if args.only in (None, "churn"):
            churn(broker, "4s")


if __name__ == "__main__":
    main()

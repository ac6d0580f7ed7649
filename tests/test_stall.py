"""The stall watchdog's logic (msgbench.run.stall), over the counts workers report: a
silence while messages are owed is a stall; slow, idle, unheard or away is not."""

from __future__ import annotations

from msgbench.api.target import Endpoint, ServerProcess
from msgbench.run.control import Flow
from msgbench.run.stall import NS, StallWatch, server_named, stall_interval_s

MS = NS // 1000


def _watch(due: bool = False, workers: frozenset[int] = frozenset({1, 2})) -> StallWatch:
    return StallWatch(1.0, workers, due, start_ns=0)


def _feed(w: StallWatch, t_ms: int, arrived: tuple[int, int], sent: int = 0,
          listening: tuple[int, int] = (1, 1)) -> None:
    for worker in (1, 2):
        w.feed(Flow(worker, t_ms * MS, sent if worker == 1 else 0, arrived[worker - 1],
                    listening[worker - 1]))


def test_arrivals_anywhere_keep_the_run_going() -> None:
    w = _watch()
    for t in range(0, 5000, 100):
        _feed(w, t, (0, t), sent=10 * t)  # worker 1 hears nothing, worker 2 all of it
        assert w.check() is None


def test_a_silence_while_publishers_send_is_a_stall_after_the_interval() -> None:
    w = _watch()
    for t in range(0, 2100, 100):
        frozen = min(t, 500)
        _feed(w, t, (frozen, frozen), sent=t)
        stall = w.check()
        if t < 1500:
            assert stall is None, t
        else:
            assert stall is not None and stall.since_ns == 500 * MS
            assert stall.silent_s == (t - 500) / 1000 and stall.listening == 2
            assert stall.sent_meanwhile == t - 500
    assert stall is not None and "nothing arrived for 1.5 s from 0.5 s" in stall.describe(0)


def test_no_listener_or_nothing_owed_is_no_stall() -> None:
    away = _watch()
    idle, blocked = _watch(due=False), _watch(due=True)
    for t in range(0, 3000, 100):
        _feed(away, t, (5, 5), sent=t, listening=(0, 0))  # everyone away (churn) or cut off
        _feed(idle, t, (5, 5), sent=0)  # a low rate: nothing was due
        _feed(blocked, t, (5, 5), sent=0)  # closed loop: the publishers are blocked
    assert away.check() is None and idle.check() is None
    stall = blocked.check()
    assert stall is not None and "could send nothing more" in stall.describe(0)


def test_a_worker_not_heard_from_is_no_evidence() -> None:
    w = _watch()
    w.feed(Flow(1, 0, 0, 5, 1))
    w.feed(Flow(2, 0, 0, 5, 1))
    for t in range(100, 3000, 100):
        w.feed(Flow(1, t * MS, t, 5, 1))  # worker 2 is late (starved, or hung)
    assert w.check() is None
    w.feed(Flow(2, 2900 * MS, 0, 5, 1))
    assert w.check() is not None
    w.feed(Flow(2, 100 * MS, 0, 99, 1))  # a report older than the last one is ignored
    assert w.check() is not None


def test_the_interval_covers_the_longest_time_spent_on_one_message() -> None:
    assert stall_interval_s(1.0, 0.001) == 1.0
    assert stall_interval_s(1.0, 2.0) == 6.0


def test_a_stall_names_the_server_by_its_processes_or_its_masked_url() -> None:
    given = Endpoint(info={"url": "amqp://u:s3cret@127.0.0.1:5672/"})
    assert server_named(given, "rabbitmq") == "the server at amqp://u:***@127.0.0.1:5672/"
    own = Endpoint(processes=(ServerProcess("redis-server", 42),),
                   info={"url": "redis://127.0.0.1:6380/0"})
    assert server_named(own, "redis") == "redis-server (pid 42) at redis://127.0.0.1:6380/0"
    assert server_named(Endpoint(), "inproc") == "inproc's server"

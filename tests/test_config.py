from __future__ import annotations

from typing import Any

import pytest

from msgbench.run.plan import plan_workers
from msgbench.workload.config import ConfigError, RunConfig
from msgbench.workload.values import parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("2m", 120.0), ("1.5", 1.5), ("250us", 0.00025)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "ms", "-1s", "1 2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_rates() -> None:
    assert parse_rate("max") is None
    assert parse_rate("50k") == 50_000
    assert parse_rate("1.5M") == 1_500_000
    for bad in ("0", "-3", "fast", "nan", "inf"):
        with pytest.raises(ConfigError):
            parse_rate(bad)


def test_validation_catches_what_cannot_work() -> None:
    RunConfig().validate()
    for bad in (
        RunConfig(subs=0),
        RunConfig(size=8),
        RunConfig(topics=3, subs=2),
        RunConfig(duration_s=0),
        RunConfig(rate=-1.0),
    ):
        with pytest.raises(ConfigError):
            bad.validate()


def test_subscribers_spread_over_topics() -> None:
    cfg = RunConfig(subs=5, topics=2)
    topo = cfg.topology()
    assert [topo.listener(s).topic for s in range(5)] == [0, 1, 0, 1, 0]
    assert [topo.listeners_of(t) for t in range(2)] == [3, 2]


def test_plan_separates_roles_and_covers_every_client() -> None:
    cfg = RunConfig(pubs=4, subs=32, target="x")
    plans = plan_workers(cfg, colocated=False, cores=2)
    assert len(plans) == 2
    assert sorted(p for w in plans for p in w.pubs) == list(range(4))
    assert sorted(s for w in plans for s in w.subs) == list(range(32))
    assert all(not (w.pubs and w.subs) for w in plans)
    assert len(plan_workers(RunConfig(pubs=4, subs=32, procs=6), False)) == 6
    assert len(plan_workers(cfg, colocated=True)) == 1


BEYOND_BOUNDS = [
    (["--size", "10000000000"], "--size"),
    (["--size", "100000000"], "--size"),
    (["--size", "2000000", "--rate", "10"], "lower --batch"),
    (["--batch", "1000000000"], "--batch"),
    (["--batch", "1e9"], "--batch"),
    (["--rate", "1e300"], "--rate"),
    (["-d", "1000000h"], "--duration"),
    (["-w", "1000000h"], "--warmup"),
    (["--probe-timeout", "1000000h"], "--probe-timeout"),
    (["--drain-timeout", "1000000h"], "--drain-timeout"),
    (["--sub-delay", "1000h"], "--sub-delay"),
    (["--churn", "1ms/1000000h"], "--churn"),
    (["-t", "zmq", "--procs", "100000"], "--procs"),
    (["-t", "zmq", "--zmq-sockbuf", "99999999999"], "--zmq-sockbuf"),
    (["-t", "zmq", "--hwm", "99999999999"], "--hwm"),
    (["-t", "ws", "--servers", "200", "--bridge", "zmq"], "--servers"),
    (["-t", "ws", "--max-client-buffer", "99999999999999"], "--max-client-buffer"),
    (["-t", "redis-streams", "--stream-maxlen", "99999999999999999999999"], "--stream-maxlen"),
    (["-t", "redis", "--redis-buffer-limit", "99999999999999999999gb"], "--redis-buffer-limit"),
]


@pytest.mark.parametrize(("args", "flag"), BEYOND_BOUNDS, ids=[" ".join(a) for a, _ in
                                                                BEYOND_BOUNDS])
def test_values_beyond_bounds_are_one_line_exit_2(run_cli: Any, args: list[str],
                                                  flag: str) -> None:
    r = run_cli("run", *args, "-q", timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not r.result_files()


def test_serve_chat_sizes_are_bounded() -> None:
    import subprocess
    import sys

    for opt in ("--max-size", "--max-client-buffer"):
        r = subprocess.run([sys.executable, "-m", "msgbench", "serve", "chat", opt, "99G"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr

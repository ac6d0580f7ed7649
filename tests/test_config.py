from __future__ import annotations

import pytest

from msgbench.run.plan import plan_workers
from msgbench.workload.config import ConfigError, RunConfig, parse_duration, parse_rate


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

"""The paired-block runner with a fake runner: coin-flip order, contended blocks redone,
sequential stopping, failures; and the fixed-work injected slowdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from test_report import make_result

from msgbench.analysis.gate import Limits
from msgbench.orchestration.ci import CiError, ContentionProbe, Plan, Report, Snapshot, run_ci
from msgbench.orchestration.sweep import Cell, Outcome
from msgbench.results.model import write
from msgbench.run.inject import Burner, unit_cost_ns, units_for

CELL = Cell("inproc", 1, 8, 64, "max", 1, "1s", "300ms")
T0 = datetime(2026, 12, 2, tzinfo=UTC)


class Clock:
    """Start times shared by both fake runners, so the runs are ordered in time."""

    def __init__(self) -> None:
        self.n = 0
        self.log: list[str] = []

    def tick(self, side: str) -> str:
        self.n += 1
        self.log.append(side)
        return (T0 + timedelta(seconds=self.n)).isoformat()


class FakeRunner:
    """Writes a synthetic result whose CPU-ns per message is ``cost`` x noise."""

    def __init__(self, side: str, clock: Clock, cost: float, noise: float = 0.01,
                 seed: int = 0, fail_at: int | None = None, lose_at: int | None = None
                 ) -> None:
        self.side, self.clock, self.cost, self.noise = side, clock, cost, noise
        self.rng = np.random.default_rng(seed)
        self.runs = 0
        self.fail_at = fail_at
        self.lose_at = lose_at

    def run(self, cell: Cell, out_dir: Path) -> Outcome:
        self.runs += 1
        if self.runs == self.lose_at:
            self.clock.tick(self.side)
            return Outcome(cell, -1, reason="no answer after 73 s: killed")
        cost = self.cost * float(np.exp(self.rng.normal(0, self.noise)))
        status = "failed" if self.runs == self.fail_at else "ok"
        r = make_result(msgs_per_cpu_s=1e9 / cost, seconds=1, rate=None, seed=self.runs,
                        status=status, reasons=("worker died",) if status == "failed" else ())
        r = replace(r, started_at=self.clock.tick(self.side))
        path = write(r, out_dir / f"{self.side}-{self.runs:03d}.json")
        return Outcome(cell, 0 if status == "ok" else 1, path, r, r.reasons[0] if r.reasons else "")


class FakeProbe(ContentionProbe):
    """Reports the given waiting shares in turn, then none."""

    def __init__(self, shares: Sequence[float | None]) -> None:
        self.shares = list(shares)

    def begin(self) -> Snapshot:
        return Snapshot(0.0, None, None)

    def end(self, s: Snapshot, outcome: Outcome) -> float | None:
        return self.shares.pop(0) if self.shares else 0.0


def _plan(tmp_path: Path, **kw: object) -> Plan:
    return Plan([CELL], tmp_path, Limits(), **kw)  # type: ignore[arg-type]


def _gate(tmp_path: Path, new_cost: float, seed: int = 1, probe: FakeProbe | None = None,
          **kw: object) -> tuple[Clock, Report]:
    clock = Clock()
    base, new = FakeRunner("base", clock, 200.0, seed=10), FakeRunner("new", clock, new_cost,
                                                                       seed=20)
    report = run_ci(_plan(tmp_path, seed=seed, **kw), base, lambda c: new,
                    probe=probe or FakeProbe([]))
    return clock, report


def test_order_follows_a_recorded_coin_and_the_seed_repeats_it(tmp_path: Path) -> None:
    clock, report = _gate(tmp_path / "a", 200.0, looks=(10,))
    firsts = [b.first for b in report.blocks]
    assert set(firsts) == {"base", "new"}
    assert clock.log[::2] == firsts  # the side that ran first in each block is the coin's
    doc = json.loads((tmp_path / "a" / "ci.json").read_text())
    assert doc["seed"] == 1 and [b["first"] for b in doc["blocks"]] == firsts
    _, again = _gate(tmp_path / "b", 200.0, looks=(10,))
    assert [b.first for b in again.blocks] == firsts
    _, other = _gate(tmp_path / "c", 200.0, seed=2, looks=(10,))
    assert [b.first for b in other.blocks] != firsts


def test_a_a_passes_at_the_first_look_and_a_slowdown_is_a_regression(tmp_path: Path) -> None:
    _, report = _gate(tmp_path / "aa", 200.0)
    assert report.verdict == "PASS" and len(report.blocks) == 10
    _, report = _gate(tmp_path / "slow", 240.0)
    assert report.verdict == "REGRESSION"
    assert report.verdicts[0].change == pytest.approx(0.2, abs=0.02)


def test_contended_blocks_are_redone_at_most_max_redo_times(tmp_path: Path) -> None:
    # block 1: contended once, then clean; block 2: contended on every attempt
    shares = [0.5, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    _, report = _gate(tmp_path, 200.0, probe=FakeProbe(shares), looks=(4,), max_redo=2)
    blocks = report.blocks
    assert [b.redone for b in blocks] == [1, 2, 0, 0]
    assert [b.contended for b in blocks] == [False, True, False, False]
    assert report.redone == 3
    # the runs of redone attempts are set aside, not analysed
    assert len(list((tmp_path / "contended").glob("*.json"))) == 2 * 3
    assert len(list((tmp_path / "base").glob("*.json"))) == 4
    doc = json.loads((tmp_path / "ci.json").read_text())
    assert doc["redone_blocks"] == 3


def test_a_failed_baseline_is_an_error_and_a_failed_candidate_a_regression(
        tmp_path: Path) -> None:
    clock = Clock()
    base = FakeRunner("base", clock, 200.0, fail_at=2)
    with pytest.raises(CiError, match="baseline run failed"):
        run_ci(_plan(tmp_path / "b"), base, lambda c: FakeRunner("new", clock, 200.0),
               probe=FakeProbe([]))
    new = FakeRunner("new", clock, 200.0, fail_at=3)
    report = run_ci(_plan(tmp_path / "n"), FakeRunner("base", clock, 200.0), lambda c: new,
                    probe=FakeProbe([]))
    assert report.verdict == "REGRESSION" and "failed" in report.problems[0]
    assert len(report.blocks) == 3


def test_injected_work_is_fixed_and_carries_fractions() -> None:
    b = Burner(0.3)
    for _ in range(100):
        b(7)  # 2.1 units a call: the fractions add up
    assert b.burnt == 210
    assert b.cpu_ns > 0  # measured, whatever it took
    with pytest.raises(ValueError):
        Burner(0.3, ns_per_msg=100.0, unit_ns=1.0)


@pytest.mark.parametrize("misestimate", [0.25, 4.0])
def test_an_injected_cost_burns_what_it_says_whatever_its_first_calibration(
        misestimate: float) -> None:
    """A first estimate of a unit's cost 4 x off either way (a calibration that caught a fast
    or a slow moment): the thread CPU time burnt still comes to the asked ns per message."""
    per_msg_ns, calls, batch = 2_000.0, 2_000, 5
    b = Burner(ns_per_msg=per_msg_ns, unit_ns=unit_cost_ns() * misestimate)
    for _ in range(calls):
        b(batch)
    asked = per_msg_ns * calls * batch
    assert b.cpu_ns == pytest.approx(asked, rel=0.05)
    assert units_for(0.05, 200.0, 20.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        units_for(0.05, 0.0, 20.0)


def test_contention_is_the_runs_own_cpu_wait_when_the_result_records_it(tmp_path: Path) -> None:
    r = make_result(seconds=2, rate=None)
    r = replace(r, processes=[{"role": "worker 0", "cpu_s": 1.0, "cpu_wait_s": 0.5},
                              {"role": "coordinator", "cpu_s": 0.1, "cpu_wait_s": 0.02}])
    probe = ContentionProbe()
    share = probe.end(Snapshot(0.0, None, None), Outcome(CELL, 0, None, r))
    assert share == pytest.approx(0.25)  # 0.5 s of waiting in a 2 s window
    # without it, the system's CPU pressure over the run (when this kernel has it)
    bare = replace(r, processes=[{"role": "worker 0", "cpu_s": 1.0}])
    share = probe.end(probe.begin(), Outcome(CELL, 0, None, bare))
    assert share is None or share >= 0.0


def test_a_run_that_left_no_result_is_redone_and_then_an_error(tmp_path: Path) -> None:
    clock = Clock()
    new = FakeRunner("new", clock, 200.0, lose_at=2)
    report = run_ci(_plan(tmp_path / "once", looks=(3,)), FakeRunner("base", clock, 200.0),
                    lambda c: new, probe=FakeProbe([]))
    assert [b.redone for b in report.blocks] == [0, 1, 0]
    lost = FakeRunner("new", clock, 200.0)
    lost.run = lambda cell, out_dir: Outcome(cell, -1, reason="crashed")  # type: ignore[method-assign]
    with pytest.raises(CiError, match="left no result"):
        run_ci(_plan(tmp_path / "always", looks=(3,)), FakeRunner("base", clock, 200.0),
               lambda c: lost, probe=FakeProbe([]))

"""``msgbench capacity``: ramp + bisect over fresh runs, the budget, Ctrl-C, the result file.

The search logic is checked against a fake runner (a knee placed where the test says); the
real thing runs on inproc with an injected per-message cost, where the knee must follow it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_report import make_result

from conftest import msgbench_argv
from msgbench.orchestration.capacity import Plan, Search, judge
from msgbench.orchestration.sweep import Cell, Outcome, Runner
from msgbench.results.capacity import (
    PHASE_HALF,
    STOP_BUDGET,
    STOP_CEILING,
    STOP_CONVERGED,
    STOP_FLOOR,
    STOP_INTERRUPTED,
    CapacityResult,
    Criteria,
    load_capacity,
)
from msgbench.results.schema import ResultError

CRITERIA = Criteria(slo_p99_ns=10_000_000, max_publish_delay_ns=1_000_000)
CELL = Cell("inproc", 2, 4, 64, "1", 1, "1s", "0s")
REAL_TIMEOUT_S = 120


@dataclasses.dataclass
class KneeRunner(Runner):
    """A fake runner: a step passes at or below ``knee`` (per publisher), loses above it."""

    knee: float = 1000.0
    interrupt_after: int | None = None
    hang_s: float = 0.0
    """Each run takes this long and leaves no result (a hung step, killed)."""
    share: float | None = None
    """CPU share of the run's one process (default: rate / knee, as if the work set it)."""
    calls: int = 0
    timeouts: list[float] = dataclasses.field(default_factory=list)

    def run(self, cell: Cell, out_dir: Path) -> Outcome:
        self.calls += 1
        self.timeouts.append(cell.timeout_s())
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        if self.hang_s:
            time.sleep(self.hang_s)
            return Outcome(cell, -1, reason=f"no answer after {self.hang_s} s: killed")
        rate = float(cell.rate)
        lost = 0 if rate <= self.knee else 50
        r = make_result(subs=cell.subs, rate=rate, lost=lost, seconds=1,
                        status="ok" if not lost else "degraded")
        share = self.share if self.share is not None else min(1.0, rate / self.knee)
        r = dataclasses.replace(r, processes=[{"role": "worker 0", "cpu_s": share}])
        return Outcome(cell, 0, None, r, "")


def _search(tmp_path: Path, runner: Runner, **plan: Any) -> CapacityResult:
    return Search(CELL, CRITERIA, Plan(first_step_s=0.0, **plan), tmp_path / "cap.json",
                  runner).run()


def test_ramp_then_bisect_brackets_the_knee(tmp_path: Path) -> None:
    result = _search(tmp_path, KneeRunner(knee=3000.0), start_rate=100.0, precision=0.05)
    assert result.stopped == STOP_CONVERGED
    assert result.capacity_rate is not None
    assert 3000 / 1.06 <= result.capacity_rate <= 3000
    assert result.capacity_offered == result.capacity_rate * CELL.pubs
    fails = [s.rate for s in result.steps if not s.passed]
    assert min(fails) <= result.capacity_rate * 1.06  # the knee is bracketed that tightly
    half = result.half_step()
    assert half is not None and half.phase == PHASE_HALF
    assert half.rate == pytest.approx(result.capacity_rate / 2, rel=0.01)
    # the busiest process at the step above the knee, and why that step failed
    assert result.limit.startswith("worker 0 at 100% of a core (msgbench's own process")
    assert result.limit.endswith("lost 50)")
    assert load_capacity(tmp_path / "cap.json") == result  # written, and round-trips


def test_a_failing_start_ramps_down_and_a_passing_ceiling_stops(tmp_path: Path) -> None:
    down = _search(tmp_path, KneeRunner(knee=40.0), start_rate=1000.0, precision=0.1)
    assert down.stopped == STOP_CONVERGED and down.capacity_rate is not None
    assert 40 / 1.11 <= down.capacity_rate <= 40
    top = _search(tmp_path, KneeRunner(knee=1e9), start_rate=1000.0, max_rate=8000.0)
    assert top.stopped == STOP_CEILING and top.capacity_rate == 8000
    assert "every step" in top.limit
    starved = _search(tmp_path, KneeRunner(knee=1000.0, share=0.05), start_rate=500.0)
    assert "worker 0 at 5% of a core" in starved.limit
    assert "other load on the machine" in starved.limit
    none = _search(tmp_path, KneeRunner(knee=0.5), start_rate=8.0, min_rate=1.0)
    assert none.stopped == STOP_FLOOR and none.capacity_rate is None
    assert [s.rate for s in none.steps] == [8.0, 4.0, 2.0, 1.0]


def test_ctrl_c_keeps_the_steps_done(tmp_path: Path) -> None:
    result = _search(tmp_path, KneeRunner(knee=1e9, interrupt_after=3), start_rate=100.0)
    assert result.stopped == STOP_INTERRUPTED
    assert [s.rate for s in result.steps] == [100.0, 200.0, 400.0]
    assert load_capacity(tmp_path / "cap.json").capacity_rate == 400.0


def test_no_step_can_outlast_the_budget(tmp_path: Path) -> None:
    runner = KneeRunner(knee=1e9)
    _search(tmp_path, runner, start_rate=100.0, max_rate=800.0, budget_s=30.0)
    assert runner.timeouts and all(t <= 30.0 for t in runner.timeouts)
    hung = _search(tmp_path, KneeRunner(hang_s=0.4), start_rate=100.0, budget_s=0.3)
    assert hung.stopped == STOP_BUDGET and hung.capacity_rate is None
    assert [s.status for s in hung.steps] == ["out of budget"]
    assert "budget ran out" in hung.steps[0].why and hung.limit == ""


def test_judge_names_the_first_failed_criterion() -> None:
    ok = make_result(p50_us=100.0, seconds=1)
    assert judge(Outcome(CELL, 0, None, ok), CRITERIA) == (True, "")
    slow = make_result(p50_us=20_000.0, seconds=1)  # p99 and publish delay beyond the bounds
    passed, why = judge(Outcome(CELL, 0, None, slow), CRITERIA)
    assert not passed and why.startswith("publishers behind schedule")
    lenient = dataclasses.replace(CRITERIA, max_publish_delay_ns=10**12)
    passed, why = judge(Outcome(CELL, 0, None, slow), lenient)
    assert not passed and "> SLO 10 ms" in why
    assert judge(Outcome(CELL, 1, reason="worker 0 died"), CRITERIA) == (False, "worker 0 died")


def test_other_documents_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": "msgbench.run", "schema_version": 2}))
    with pytest.raises(ResultError, match="not a msgbench capacity result"):
        load_capacity(path)
    path.write_text(json.dumps({"schema": "msgbench.capacity", "schema_version": 99}))
    with pytest.raises(ResultError, match="version 99 is not supported"):
        load_capacity(path)


def _capacity_cli(tmp_path: Path, cost_ns: int, *args: str) -> CapacityResult:
    out = tmp_path / f"cost-{cost_ns}"
    argv = msgbench_argv("capacity", "--subs", "1", "--duration", "0.5s", "--warmup", "0.2s",
                         "--slo", "100ms", "--max-publish-delay", "100ms", "--no-half",
                         "--out", str(out), *args)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=REAL_TIMEOUT_S,
                          env={**os.environ, "MSGBENCH_INJECT_COST_NS": str(cost_ns)},
                          check=False)
    assert proc.returncode in (0, 1), proc.stderr
    assert "capacity of inproc 1x1" in proc.stdout
    (doc,) = out.glob("*.json")
    result = load_capacity(doc)
    for step in result.steps:  # every step's run result is kept beside the document
        assert step.status == "error" or (doc.parent / step.file).is_file()
    return result


KNEE_SLACK = 1.2
"""How far above an injected cost's nominal cap a short step may still pass (see below)."""


@pytest.mark.serial
def test_the_knee_follows_an_injected_per_message_cost(tmp_path: Path) -> None:
    # 2 ms per delivery caps one subscriber at 500/s, 0.5 ms at 2000/s
    slow = _capacity_cli(tmp_path, 2_000_000, "--start", "125", "--precision", "0.5")
    fast = _capacity_cli(tmp_path, 500_000, "--start", "500", "--precision", "0.5")
    assert slow.capacity_rate is not None and fast.capacity_rate is not None
    # The burn is thread CPU time, measured and owed over (run/inject.py), so it costs what it
    # says on a loaded machine too; a 0.5 s step whose queue grows for 0.7 s stays within the
    # 100 ms bound up to ~1.14 x the cap. Above 1.2 x the cost did not set the knee.
    assert slow.capacity_rate <= 500 * KNEE_SLACK
    assert fast.capacity_rate <= 2000 * KNEE_SLACK
    assert fast.capacity_rate > slow.capacity_rate
    assert "worker 0" in slow.limit  # the subscriber's worker carries the cost


@pytest.mark.serial
def test_a_search_that_hits_its_budget_stops_with_what_it_found(tmp_path: Path) -> None:
    result = _capacity_cli(tmp_path, 0, "--start", "200", "--budget", "14s")
    assert result.stopped == STOP_BUDGET
    assert len(result.steps) >= 1  # how many fit depends on the machine; time is bounded below
    assert result.elapsed_s <= 14 + max(s.elapsed_s for s in result.steps)
    passed = [s.rate for s in result.steps if s.passed]
    assert result.capacity_rate == (max(passed) if passed else None)
    assert math.isclose(result.steps[0].rate, 200.0)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["--slo", "soon"], ["--start", "max"], ["--target", "nosuch"],
                 ["--min-rate", "10", "--max-rate", "5"]):
        proc = subprocess.run(msgbench_argv("capacity", *args, "--out", str(tmp_path)),
                              capture_output=True, text=True, timeout=REAL_TIMEOUT_S,
                              check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("msgbench: error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr

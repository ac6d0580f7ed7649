"""``msgbench ci``: paired blocks of baseline and candidate runs, judged with sequential looks.

Each block is one baseline and one candidate run of one workload, each a fresh
``msgbench run`` process, in an order decided by a coin flip from a seeded
generator (the seed, and so every flip, is recorded in ``OUT/ci.json``). The
gate looks at the blocks after each planned look (10, 20, 30) and stops at
REGRESSION, or once every gated metric is PASS. A block in which either run
waited for a CPU more than ``contention`` of its time is not believed: its
files go to ``OUT/contended/`` and the block is run again, at most
``max_redo`` times (the report counts them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from msgbench.analysis.gate import (
    Comparison,
    Limits,
    Pairs,
    Verdict,
    cpu_ns_per_msg,
    evaluate,
    final,
)
from msgbench.analysis.labels import workload_label
from msgbench.analysis.stats_tests import (
    DEFAULT_LOOKS,
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    look_level,
)
from msgbench.orchestration.sweep import Cell, Outcome
from msgbench.results.model import STATUS_FAILED
from msgbench.run.inject import unit_cost_ns

DEFAULT_CONTENTION = 0.10
"""A run that waited for a CPU more than this fraction of its time is redone."""
DEFAULT_MAX_REDO = 2
CALIBRATION_RUNS = 3
"""Baseline runs per workload whose median CPU-ns per message calibrates an injected slowdown."""
PSI_CPU = Path("/proc/pressure/cpu")
PROC_STAT = Path("/proc/stat")


class CiError(Exception):
    """The gate cannot be run to a verdict (a run left no result, a baseline failed); exit 2."""


class CellRunner(Protocol):
    """What runs one cell: :class:`msgbench.orchestration.sweep.Runner` or a test's fake."""

    def run(self, cell: Cell, out_dir: Path) -> Outcome: ...


# --- contention -----------------------------------------------------------------------


def _psi_some_us() -> float | None:
    try:
        for line in PSI_CPU.read_text().splitlines():
            if line.startswith("some"):
                return float(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _steal_ticks() -> float | None:
    try:
        fields = PROC_STAT.read_text().splitlines()[0].split()
        return float(fields[8])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Snapshot:
    """System counters read just before a run."""

    wall: float
    psi_us: float | None
    steal: float | None


class ContentionProbe:
    """How much of a run's time it spent waiting for a CPU, as a fraction.

    The run's own processes' run delay (``cpu_wait_s`` in the result, from
    schedstat) over the measured window when the result has it; otherwise the
    system's CPU pressure (``/proc/pressure/cpu`` "some") over the run's wall
    time. Steal time of a virtual machine counts as waiting too.
    """

    def begin(self) -> Snapshot:
        """Counters before the run."""
        return Snapshot(time.monotonic(), _psi_some_us(), _steal_ticks())

    def end(self, s: Snapshot, outcome: Outcome) -> float | None:
        """The waiting fraction of the run that started at ``s``; None if unknown."""
        wall = max(1e-9, time.monotonic() - s.wall)
        parts: list[float] = []
        r = outcome.result
        waits = [p.get("cpu_wait_s") for p in r.processes] if r is not None else []
        if r is not None and waits and all(isinstance(w, int | float) for w in waits):
            parts.append(max(float(w) for w in waits if w is not None)
                         / max(1e-9, r.summary.duration_s))
        else:
            psi = _psi_some_us()
            if psi is not None and s.psi_us is not None:
                parts.append((psi - s.psi_us) / 1e6 / wall)
        steal = _steal_ticks()
        if steal is not None and s.steal is not None:
            hz = os.sysconf("SC_CLK_TCK")
            parts.append((steal - s.steal) / hz / wall / (os.cpu_count() or 1))
        return max(parts) if parts else None


# --- blocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run of a block as the manifest keeps it."""

    path: str | None
    status: str
    cpu_ns_per_msg: float | None
    contention: float | None


@dataclass(frozen=True)
class Block:
    """One paired block: which side ran first (the coin), both runs, how often it was redone."""

    index: int
    workload: str
    first: str
    """``base`` or ``new``: the coin flip."""
    base: RunRecord
    new: RunRecord
    redone: int
    contended: bool
    """Still over the contention limit after the last redo (kept, and counted)."""


@dataclass(frozen=True)
class Plan:
    """Everything the block loop needs besides the runners."""

    cells: Sequence[Cell]
    out: Path
    limits: Limits
    looks: Sequence[int] = DEFAULT_LOOKS
    seed: int = 0
    contention: float = DEFAULT_CONTENTION
    max_redo: int = DEFAULT_MAX_REDO
    calibration: dict[str, Any] = field(default_factory=dict)
    """How an injected slowdown was sized, per workload (recorded in ``OUT/ci.json``)."""


@dataclass
class Report:
    """What the gate did and decided; written to ``OUT/ci.json``."""

    seed: int
    blocks: list[Block] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    looks_done: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def redone(self) -> int:
        """Blocks run again because of contention, over all blocks."""
        return sum(b.redone for b in self.blocks)

    @property
    def verdict(self) -> str:
        """REGRESSION if any gated metric (or a candidate run) regressed, PASS if every gated
        metric passed, else INCONCLUSIVE."""
        gated = [v for v in self.verdicts if v.limit is not None]
        if self.problems or any(v.verdict == REGRESSION for v in gated):
            return REGRESSION
        return PASS if gated and all(v.verdict == PASS for v in gated) else INCONCLUSIVE

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"seed": self.seed, "verdict": self.verdict, "elapsed_s": self.elapsed_s,
                "looks_done": self.looks_done, "redone_blocks": self.redone,
                "problems": self.problems, "calibration": self.calibration,
                "blocks": [asdict(b) for b in self.blocks],
                "verdicts": [asdict(v) for v in self.verdicts]}


def _record(o: Outcome, contention: float | None) -> RunRecord:
    r = o.result
    return RunRecord(str(o.path) if o.path else None, r.status if r else "error",
                     cpu_ns_per_msg(r) if r is not None else None, contention)


def _set_aside(o: Outcome, out: Path) -> None:
    if o.path is not None and o.path.exists():
        (out / "contended").mkdir(parents=True, exist_ok=True)
        shutil.move(str(o.path), out / "contended" / o.path.name)


def run_block(index: int, cell: Cell, coin: int, base: CellRunner, new: CellRunner, plan: Plan,
              probe: ContentionProbe) -> tuple[Block, Outcome, Outcome]:
    """Run one block (order by ``coin``: 0 base first), redoing it while it is contended
    or a run left no result, at most ``plan.max_redo`` times."""
    first = "base" if coin == 0 else "new"
    redone = 0
    while True:
        got: dict[str, tuple[Outcome, float | None]] = {}
        for side in (("base", "new") if coin == 0 else ("new", "base")):
            runner = base if side == "base" else new
            snap = probe.begin()
            o = runner.run(cell, plan.out / side)
            got[side] = (o, probe.end(snap, o))
        (ob, cb), (on, cn) = got["base"], got["new"]
        waits = [c for c in (cb, cn) if c is not None]
        contended = bool(waits) and max(waits) > plan.contention
        missing = ob.result is None or on.result is None  # a hung or crashed run: try again
        if (not contended and not missing) or redone >= plan.max_redo:
            block = Block(index, workload_label_of(cell, ob, on), first, _record(ob, cb),
                          _record(on, cn), redone, contended)
            return block, ob, on
        _set_aside(ob, plan.out)
        _set_aside(on, plan.out)
        redone += 1


def workload_label_of(cell: Cell, *outcomes: Outcome) -> str:
    """The workload's label from a result of the block (the cell's label if none ran)."""
    for o in outcomes:
        if o.result is not None:
            return workload_label(o.result.config)
    return cell.label()


def _check_runs(ob: Outcome, on: Outcome, report: Report) -> None:
    for side, o in (("baseline", ob), ("candidate", on)):
        if o.result is None:
            raise CiError(f"a {side} run left no result ({o.cell.label()}): {o.reason}")
    assert ob.result is not None and on.result is not None
    if ob.result.status == STATUS_FAILED:
        raise CiError(f"a baseline run failed ({ob.cell.label()}): {ob.reason}; "
                      "the baseline must run cleanly")
    if on.result.status == STATUS_FAILED:
        report.problems.append(f"candidate run {on.path} failed: {on.reason}")
    elif on.result.summary.counters.lost and not ob.result.summary.counters.lost:
        report.problems.append(f"candidate run {on.path} lost {on.result.summary.counters.lost:,} "
                               "messages; its baseline lost none")


def _look(pairs: dict[int, Pairs], labels: dict[int, str], plan: Plan,
          alpha: float, pass_alpha: float) -> list[Verdict]:
    comps = [Comparison(labels[i], [b for b, _ in p], [n for _, n in p], p)
             for i, p in pairs.items() if p]
    return evaluate(comps, plan.limits, alpha, pass_alpha)


def run_ci(plan: Plan, base: CellRunner, new_for: Callable[[Cell], CellRunner],
           progress: Callable[[str], None] = lambda s: None,
           probe: ContentionProbe | None = None) -> Report:
    """Run blocks until a look decides or the last look is done; write ``OUT/ci.json``.

    ``new_for(cell)`` gives the candidate's runner for a workload (its
    injected work may differ per workload). Raises :class:`CiError` when a run
    leaves no result or a baseline run fails.
    """
    probe = probe or ContentionProbe()
    rng = np.random.default_rng(plan.seed)
    report = Report(plan.seed, calibration=dict(plan.calibration))
    started = time.monotonic()
    pairs: dict[int, Pairs] = {i: [] for i in range(len(plan.cells))}
    labels: dict[int, str] = {}
    decided: dict[tuple[str, str], Verdict] = {}
    active = set(range(len(plan.cells)))
    a, b = look_level(plan.limits.alpha, plan.looks), look_level(plan.limits.pass_alpha, plan.looks)
    verdicts: list[Verdict] = []
    for k in range(max(plan.looks)):
        for i in sorted(active):
            coin = int(rng.integers(2))
            cell = replace(plan.cells[i], trial=k)
            block, ob, on = run_block(k, cell, coin, base, new_for(plan.cells[i]), plan, probe)
            report.blocks.append(block)
            _check_runs(ob, on, report)
            labels[i] = block.workload
            assert ob.path is not None and on.path is not None
            assert ob.result is not None and on.result is not None
            if on.result.status != STATUS_FAILED:
                pairs[i].append(((ob.path, ob.result), (on.path, on.result)))
            progress(f"block {k + 1} {block.workload}: {block.first} first, CPU-ns/msg "
                     f"base {_ns(block.base)} new {_ns(block.new)}"
                     + (f", redone {block.redone}x" if block.redone else ""))
        if report.problems:
            break
        if k + 1 not in plan.looks:
            continue
        report.looks_done.append(k + 1)
        verdicts = [decided.get((v.workload, v.metric), v)
                    for v in _look(pairs, labels, plan, a, b)]
        for v in verdicts:
            if v.verdict in (PASS, REGRESSION):
                decided.setdefault((v.workload, v.metric), v)
        progress(f"look at {k + 1} blocks: " + ", ".join(
            f"{v.workload} {v.metric} {v.verdict}" for v in verdicts if v.limit is not None))
        if any(v.verdict == REGRESSION for v in decided.values()):
            break
        for i in list(active):
            gated = [v for v in verdicts if v.workload == labels.get(i) and v.limit is not None]
            if gated and all(v.verdict == PASS for v in gated):
                active.discard(i)
        if not active:
            break
    report.verdicts = final(verdicts)
    report.elapsed_s = time.monotonic() - started
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / "ci.json").write_text(json.dumps(report.to_json(), indent=1, default=str) + "\n")
    return report


def _ns(r: RunRecord) -> str:
    return "-" if r.cpu_ns_per_msg is None else f"{r.cpu_ns_per_msg:.1f}"


def calibrate(cells: Sequence[Cell], base: CellRunner, out: Path,
              runs: int = CALIBRATION_RUNS) -> tuple[dict[int, float], float]:
    """Median CPU-ns per message of each workload over ``runs`` baseline runs (in
    ``OUT/calibration``), and the median CPU-ns of one work unit measured right after each
    of those runs (so both are measured in the same state of the machine), for an injected
    slowdown sized as a share of the workload's own cost."""
    costs: dict[int, float] = {}
    units: list[float] = []
    for i, cell in enumerate(cells):
        values = []
        for t in range(runs):
            o = base.run(replace(cell, trial=t), out / "calibration")
            units.append(unit_cost_ns())
            if o.result is None or o.result.status == STATUS_FAILED:
                raise CiError(f"calibration run of {cell.label()} failed: {o.reason}")
            values.append(cpu_ns_per_msg(o.result))
        costs[i] = float(np.median(values))
    return costs, float(np.median(units))

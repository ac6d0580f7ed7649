"""The capacity result: one document holding a whole capacity search (every step of the curve).

Schema ``msgbench.capacity``, its own version history (:data:`HISTORY`), apart from the run
result's (``msgbench.run``): a capacity document refers to its steps' run files by name and
copies from each the figures a curve needs, so it renders and plots on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from msgbench.results.files import read_json, write_json
from msgbench.results.schema import Change, ResultError

CAPACITY_SCHEMA = "msgbench.capacity"
CAPACITY_VERSION = 1
HISTORY = (
    Change(1, "2026-12-02", "First format: workload, pass criteria, every step (rate, verdict, "
           "deliveries/s, p50/p99/p99.9, publish delay, loss, CPU of each process, limit), the "
           "capacity found, why the search stopped."),
)

STOP_CONVERGED = "converged"
"""The bisection narrowed the knee to the requested precision."""
STOP_CEILING = "ceiling"
"""Every step up to ``--max-rate`` passed: the capacity is at least that."""
STOP_FLOOR = "floor"
"""Even the lowest rate tried failed: no sustainable rate at or above ``--min-rate``."""
STOP_BUDGET = "budget"
"""The time budget ran out before the search converged: the capacity is a lower bound."""
STOP_INTERRUPTED = "interrupted"
"""Ctrl-C: the steps done are kept."""

PHASE_RAMP = "ramp"
PHASE_BISECT = "bisect"
PHASE_HALF = "half"
"""The extra step at 50 % of the capacity: the latency a design gives with headroom."""


@dataclass(frozen=True)
class Criteria:
    """When a step passes: all of these hold."""

    slo_p99_ns: int
    """p99 latency (from the intended send time) at most this."""
    max_publish_delay_ns: int
    """Publish delay p99 at most this: the publishers kept their schedule."""
    min_delivered_ratio: float = 0.9
    """Deliveries/s inside the window at least this share of what was owed per second (a
    stalled run fails; a little less is latency shifting arrivals past the window's end)."""


@dataclass(frozen=True)
class Step:
    """One fresh ``msgbench run`` at one rate, and its verdict."""

    rate: float
    """Per-publisher rate (what ``msgbench run --rate`` takes)."""
    offered: float
    """Messages/s offered by all publishers together."""
    phase: str
    passed: bool
    why: str
    """Empty when passed; else the first criterion that failed, for people."""
    status: str
    deliveries_per_s: float | None = None
    mb_per_s: float | None = None
    msgs_per_cpu_s: float | None = None
    p50_ns: int | None = None
    p99_ns: int | None = None
    p999_ns: int | None = None
    publish_delay_p99_ns: int | None = None
    lost: int | None = None
    disconnected: int | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    """``{"role", "cpu_s", "core_share"}`` of every process of the run."""
    limit: str = ""
    """The run's first limit (its ``limits``), or the busiest process."""
    file: str = ""
    """The step's run result, relative to the capacity document's directory."""
    elapsed_s: float = 0.0
    """Wall time the step took, start-up included."""


@dataclass(frozen=True)
class CapacityResult:
    """A capacity search as written to disk."""

    workload: dict[str, Any]
    """``target`` (with its flags), ``target_name``, ``variant``, ``pattern``, ``pubs``,
    ``subs``, ``size``, ``topics``, ``duration``, ``warmup``, ``args``."""
    criteria: Criteria
    steps: list[Step]
    capacity_rate: float | None
    """Highest passing per-publisher rate, or None when no step passed."""
    stopped: str
    limit: str
    """What limits the design at the knee (from the first failing step above the capacity)."""
    started_at: str
    elapsed_s: float
    budget_s: float
    environment: dict[str, Any] = field(default_factory=dict)
    schema: str = CAPACITY_SCHEMA
    schema_version: int = CAPACITY_VERSION

    @property
    def capacity_offered(self) -> float | None:
        """Messages/s of all publishers together at the capacity."""
        pubs = int(self.workload["pubs"])
        return None if self.capacity_rate is None else self.capacity_rate * pubs

    def step_at_capacity(self) -> Step | None:
        """The passing step at the capacity rate."""
        return next((s for s in self.steps if s.passed and s.rate == self.capacity_rate
                     and s.phase != PHASE_HALF), None)

    def half_step(self) -> Step | None:
        """The step at 50 % of the capacity, when it was run."""
        return next((s for s in self.steps if s.phase == PHASE_HALF), None)

    def curve(self) -> list[Step]:
        """Steps with latency figures, by offered rate: the latency-throughput curve."""
        return sorted((s for s in self.steps if s.p99_ns is not None), key=lambda s: s.offered)

    def to_json(self) -> dict[str, Any]:
        """The document as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> CapacityResult:
        """Rebuild from a document; raises :class:`ResultError` with one line when it is not a
        capacity document of a known version, or is malformed. Unknown keys are tolerated."""
        if not is_capacity(data):
            raise ResultError("not a msgbench capacity result")
        version = data.get("schema_version")
        if version != CAPACITY_VERSION:
            raise ResultError(f"capacity schema version {version!r} is not supported "
                              f"(this msgbench reads version {CAPACITY_VERSION})")
        # the types and ranges of every field, as a run result's are checked
        from msgbench.results.validate import validate_fields  # it imports model, not this

        validate_fields(cls, data, "capacity")
        try:
            d = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
            d["criteria"] = Criteria(**_known(Criteria, d["criteria"]))
            d["steps"] = [Step(**_known(Step, s)) for s in d["steps"]]
            for key in ("target", "pubs", "subs", "size"):
                if key not in d["workload"]:
                    raise ResultError(f"malformed capacity document: workload lacks {key}")
            return cls(**d)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ResultError(f"malformed capacity document: {exc}") from exc


def _known(kind: type, data: Any) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in dict(data).items() if k in names}


def is_capacity(data: Any) -> bool:
    """True when ``data`` (a parsed JSON document) names the capacity schema."""
    return isinstance(data, dict) and data.get("schema") == CAPACITY_SCHEMA


def write_capacity(result: CapacityResult, path: Path) -> Path:
    """Write ``result`` to ``path`` atomically (a reader never sees half a file)."""
    return write_json(result.to_json(), path)

def load_capacity(path: Path) -> CapacityResult:
    """Read a capacity file; raises :class:`ResultError` with one line on any problem."""
    data = read_json(path)
    try:
        return CapacityResult.from_json(data)
    except ResultError as exc:
        raise ResultError(f"{path}: {exc}") from exc

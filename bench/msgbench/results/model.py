"""The result document: one versioned JSON file per run.

The file holds the configuration, the environment, counters, per-second
series and the encoded histograms, so percentiles can be recomputed and runs
merged later. Older schema versions are read through
:mod:`msgbench.results.schema`, which keeps the history of the format; keys this
version does not know are tolerated (a newer msgbench may add some).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from msgbench.accounting.counters import Counters
from msgbench.results.files import read_json, write_json
from msgbench.results.schema import SCHEMA, SCHEMA_VERSION, upgrade
from msgbench.results.schema import ResultError as ResultError

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class Summary:
    """The headline figures. In the file, the counters' fields stand beside the others."""

    counters: Counters
    duration_s: float
    deliveries_per_s: float
    mb_per_s: float
    cpu_s: float
    msgs_per_cpu_s: float
    latency_ns: dict[str, Any]
    latency_uncorrected_ns: dict[str, Any]
    publish_delay_ns: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The summary as written: counters flattened beside the figures."""
        d = asdict(self)
        del d["counters"]
        return {**self.counters.to_json(), **d}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """Inverse of :meth:`to_json`; keys of neither kind are ignored."""
        own = {f.name for f in fields(cls)} - {"counters"}
        return cls(counters=Counters.from_json(data), **{k: data[k] for k in own})


@dataclass(frozen=True)
class SecondStats:
    """What happened in one second of the measurement (deliveries by arrival time)."""

    second: int
    published: int
    delivered: int
    gaps: int
    duplicated: int
    reordered: int
    p50_ns: int
    p99_ns: int
    max_ns: int
    expected: int = 0
    """Deliveries owed for what was published in this second."""
    backlog: int = 0
    """Owed but not yet delivered at the end of this second (all seconds so far)."""
    histogram: str = ""
    """This second's latency HdrHistogram, encoded (for interval logs)."""
    queue_waiting: int | None = None
    """Tasks in the shared groups' queues at the end of this second (None: unknown)."""
    queue_unacked: int | None = None
    """Tasks handed out and not yet acknowledged at the end of this second (None: unknown)."""


@dataclass(frozen=True)
class RunResult:
    """One run, as written to disk."""

    config: dict[str, Any]
    environment: dict[str, Any]
    status: str
    reasons: list[str]
    partial: bool
    started_at: str
    summary: Summary
    processes: list[dict[str, Any]]
    series: list[SecondStats]
    histograms: dict[str, str]
    subscribers: list[dict[str, Any]]
    target: dict[str, Any] = field(default_factory=dict)
    latency_mode: str = "open-loop"
    legs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Request/reply: request leg, service and reply leg, each a latency summary (ns)."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per shared group (``tasks``): members' shares, fairness, utilisation, recovery."""
    measure_started_at: str = ""
    """Wall-clock start of the measured window (ISO 8601, ms); empty when the run never got
    there, or in files written before it was recorded."""
    limits: list[str] = field(default_factory=list)
    """What limited the run, the first limit first (:mod:`msgbench.results.limits`); empty
    when none was found, or in files written before it was recorded."""
    cpu_pressure: dict[str, float] = field(default_factory=dict)
    """The machine over the measured window: ``some`` / ``full`` CPU pressure and hypervisor
    ``steal`` as shares (see :meth:`msgbench.results.costs.CostMeter.pressure`)."""
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The document as a JSON-ready dict."""
        d = asdict(self)
        d["summary"] = self.summary.to_json()
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild from a document of any known schema version (see
        :mod:`msgbench.results.schema`); raises :class:`ResultError` on a bad document."""
        d = upgrade(data)
        from msgbench.results.validate import validate_document  # it imports this module

        validate_document(d)
        try:
            missing = [k for k in REQUIRED_CONFIG if k not in d["config"]]
            if missing:
                raise ResultError(f"malformed result document: config lacks {', '.join(missing)}")
            known = {f.name for f in fields(cls)}
            d = {k: v for k, v in d.items() if k in known}
            d["summary"] = Summary.from_json(d["summary"])
            names = {f.name for f in fields(SecondStats)}
            d["series"] = [SecondStats(**{k: v for k, v in s.items() if k in names})
                           for s in d["series"]]
            result = cls(**d)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ResultError(f"malformed result document: {exc}") from exc
        return result


REQUIRED_CONFIG = ("target", "pubs", "subs", "size", "rate", "duration_s", "warmup_s", "topics")
"""Config keys every reader of results relies on."""


def write(result: RunResult, path: Path) -> Path:
    """Write ``result`` to ``path`` atomically (a reader never sees half a file)."""
    return write_json(result.to_json(), path)

def load(path: Path) -> RunResult:
    """Read a result file; raises :class:`ResultError` with one line on any problem."""
    data = read_json(path)
    try:
        return RunResult.from_json(data)
    except ResultError as exc:
        raise ResultError(f"{path}: {exc}") from exc

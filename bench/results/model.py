"""The result document: one versioned JSON file per run.

The file holds the configuration, the environment, counters, per-second
series and the encoded histograms, so percentiles can be recomputed and runs
merged later. :func:`load` refuses documents of another schema version.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "msgbench.run"
SCHEMA_VERSION = 1

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_FAILED = "failed"


class ResultError(Exception):
    """A result file cannot be read; the message is one line for the user."""


@dataclass(frozen=True)
class Summary:
    """The headline figures. Field names are part of the file format."""

    published: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    reordered: int
    gaps: int
    misrouted: int
    disconnected_subscribers: int
    duration_s: float
    deliveries_per_s: float
    mb_per_s: float
    cpu_s: float
    msgs_per_cpu_s: float
    latency_ns: dict[str, Any]
    latency_uncorrected_ns: dict[str, Any]
    publish_delay_ns: dict[str, Any]
    latency_out_of_range: int
    lost_during_churn: int = 0
    """Part of ``lost`` that was published while its subscriber was away (``--churn``)."""


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
    subscribers: list[dict[str, int]]
    target: dict[str, Any] = field(default_factory=dict)
    latency_mode: str = "open-loop"
    measure_started_at: str = ""
    """Wall-clock start of the measured window (ISO 8601, ms); empty when the run never got
    there, or in files written before it was recorded."""
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The document as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild from :meth:`to_json` output; raises :class:`ResultError` on a bad document."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ResultError("not a msgbench run result")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultError(
                f"result schema version {version} is not supported (this msgbench reads "
                f"version {SCHEMA_VERSION})"
            )
        from msgbench.results.validate import validate_document  # it imports this module

        validate_document(data)
        try:
            d = dict(data)
            missing = [k for k in REQUIRED_CONFIG if k not in d["config"]]
            if missing:
                raise ResultError(f"malformed result document: config lacks {', '.join(missing)}")
            d["summary"] = Summary(**d["summary"])
            d["series"] = [SecondStats(**s) for s in d["series"]]
            result = cls(**d)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResultError(f"malformed result document: {exc}") from exc
        _check_histograms(result)
        return result


REQUIRED_CONFIG = ("target", "pubs", "subs", "size", "rate", "duration_s", "warmup_s", "topics")
"""Config keys every reader of results relies on."""


def _check_histograms(result: RunResult) -> None:
    """Refuse a document whose encoded histograms do not decode (a corrupt file)."""
    from msgbench.accounting.histogram import Histogram  # numpy-heavy; only readers need it

    encoded = [*result.histograms.values(), *(s.histogram for s in result.series)]
    try:
        for text in encoded:
            if text:
                Histogram.decode(text)
    except ValueError as exc:
        raise ResultError(f"malformed result document: {exc}") from None


def write(result: RunResult, path: Path) -> Path:
    """Write ``result`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(result.to_json(), f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with open(os.devnull, "w"):
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path) -> RunResult:
    """Read a result file; raises :class:`ResultError` with one line on any problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ResultError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ResultError(f"{path} is nested too deeply to be a result") from None
    try:
        return RunResult.from_json(data)
    except ResultError as exc:
        raise ResultError(f"{path}: {exc}") from exc

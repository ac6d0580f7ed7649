"""Verdicts of the regression gate on result files: which runs may be compared, what is gated.

One primary metric decides: **CPU-ns per delivered message over every process**
(coordinator, workers, brokers and servers), lower is better. Latency
percentiles are reported and gated only when a limit is given; closed-loop
latency (measured under saturation) never is. The statistics live in
:mod:`msgbench.analysis.stats_tests`: runs interleaved in pairs (``msgbench
ci`` blocks, or stored files whose start times show the interleaving) are
tested by sign flips of the block log ratios, other runs by relabelling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from msgbench.analysis.labels import (
    PATTERN_FIELDS,
    WORKLOAD_FIELDS,
    workload_key,
    workload_label,
)
from msgbench.analysis.stats_tests import (
    DEFAULT_ALPHA,
    DEFAULT_PASS_ALPHA,
    INCONCLUSIVE,
    MORE_DATA,
    Evidence,
    decide,
    evidence,
    sign_flip_p,
    two_sample_p,
)
from msgbench.results.model import STATUS_FAILED, STATUS_OK, RunResult

INFO = "info"
"""Reported, not gated (no limit)."""
PRIMARY = "CPU-ns/msg"
MIN_BLOCKS = 2

Runs = list[tuple[Path, RunResult]]
Pairs = list[tuple[tuple[Path, RunResult], tuple[Path, RunResult]]]
"""(base, candidate) per block, in block order."""


class CompareError(Exception):
    """The comparison cannot be made; ``str(exc)`` is one line for the user (exit 2)."""


@dataclass(frozen=True)
class Limits:
    """Limits as fractions (None: report only) and the two error budgets."""

    throughput: float | None = 0.05
    """Largest tolerated growth of CPU-ns per message."""
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    alpha: float = DEFAULT_ALPHA
    pass_alpha: float = DEFAULT_PASS_ALPHA


def cpu_ns_per_msg(r: RunResult) -> float:
    """CPU-ns of every process in the measured window per delivery in that window."""
    cpu_s = sum(float(p.get("cpu_s", 0.0)) for p in r.processes) or r.summary.cpu_s
    in_window = r.summary.deliveries_per_s * r.summary.duration_s
    return cpu_s * 1e9 / in_window if in_window > 0 else math.inf


@dataclass(frozen=True)
class Metric:
    """A figure taken from each run, its good direction and which limit gates it."""

    name: str
    value: Callable[[RunResult], float]
    higher_is_better: bool
    limit: str | None
    latency: bool


HEADLINES = {
    "broadcast": (PRIMARY, "deliveries/s", ""),
    "tasks": ("CPU-ns/task", "tasks/s", "completion "),
    "rpc": ("CPU-ns/request", "requests/s", "round trip "),
}
"""Per pattern, the names of the same figures: CPU-ns per delivery (a message delivered,
a task completed, a reply matched), that count per second of the window, and the latency
(delivery, completion from the intended submit, round trip from the intended send)."""


def metrics_for(pattern: str) -> tuple[Metric, ...]:
    """The metrics of ``pattern``'s runs, named as its reports name them; the same
    figures and limits for every pattern (a pattern this version does not know is
    treated as broadcast)."""
    cpu, rate, lat = HEADLINES.get(pattern, HEADLINES["broadcast"])
    return (
        Metric(cpu, cpu_ns_per_msg, False, "throughput", False),
        Metric(rate, lambda r: r.summary.deliveries_per_s, True, None, False),
        Metric(f"{lat}p50", lambda r: float(r.summary.latency_ns["p50"]), False, "p50", True),
        Metric(f"{lat}p99", lambda r: float(r.summary.latency_ns["p99"]), False, "p99", True),
        Metric(f"{lat}p99.9", lambda r: float(r.summary.latency_ns["p999"]), False, "p999",
               True),
    )


METRICS = metrics_for("broadcast")
"""The broadcast metrics (their names are the gate's original ones)."""


def is_cpu_metric(name: str) -> bool:
    """Whether ``name`` is one of the CPU-ns per delivery metrics."""
    return name.startswith("CPU-ns/")


def is_latency_metric(name: str) -> bool:
    """Whether ``name`` is a latency percentile (``p99``, ``completion p99.9``...)."""
    last = name.rsplit(" ", 1)[-1]
    return last.startswith("p") and last[1:2].isdigit()


@dataclass(frozen=True)
class Verdict:
    """The evidence for one metric of one workload and the decision drawn from it."""

    workload: str
    metric: str
    higher_is_better: bool
    paired: bool
    n: int
    """Blocks (paired) or the smaller side's runs (unpaired)."""
    base_median: float
    new_median: float
    change: float
    """Estimated change in the bad direction (0.05: 5 % worse), from trimmed means of logs."""
    p_worse: float
    p_within: float
    limit: float | None
    verdict: str


@dataclass(frozen=True)
class Comparison:
    """One workload's runs, paired by block when they were interleaved."""

    label: str
    base: Runs
    new: Runs
    pairs: Pairs | None


def _log(v: float) -> float:
    return math.log(v) if v > 0 and math.isfinite(v) else math.nan


def measure(c: Comparison, m: Metric, limit: float | None) -> tuple[Evidence, float, float]:
    """Both tests for metric ``m`` of one comparison, and the two medians."""
    sign = -1.0 if m.higher_is_better else 1.0
    if c.pairs is not None:
        b = np.array([m.value(pb[1]) for pb, _ in c.pairs])
        n = np.array([m.value(pn[1]) for _, pn in c.pairs])
        d = np.array([sign * (_log(y) - _log(x)) for x, y in zip(b, n, strict=True)])
        ev = evidence(d[np.isfinite(d)], limit or 0.0)
    else:
        b = np.array([m.value(r) for _, r in c.base])
        n = np.array([m.value(r) for _, r in c.new])
        lb, ln = np.array([sign * _log(v) for v in b]), np.array([sign * _log(v) for v in n])
        ev = evidence(ln[np.isfinite(ln)], limit or 0.0, paired=False,
                      base=list(lb[np.isfinite(lb)]))
    return ev, float(np.median(b)), float(np.median(n))


def evaluate(comparisons: Sequence[Comparison], limits: Limits, alpha: float | None = None,
             pass_alpha: float | None = None) -> list[Verdict]:
    """Verdicts per workload and metric, one look, Holm over every gated hypothesis.

    ``alpha`` / ``pass_alpha`` are this look's levels (default: the whole
    budgets of ``limits``, right for stored runs analysed once). A gated
    metric is REGRESSION, PASS or MORE DATA; an ungated one ``info``.
    """
    gated: list[tuple[int, Evidence]] = []
    rows: list[tuple[Comparison, Metric, float | None, Evidence, float, float]] = []
    for c in comparisons:
        closed = c.base[0][1].config["rate"] is None
        for m in metrics_for(pattern_of(c.base[0][1])):
            limit = getattr(limits, m.limit) if m.limit else None
            if m.latency and closed:
                limit = None  # latency under saturation is not a latency target
            ev, mb, mn = measure(c, m, limit)
            if limit is not None:
                gated.append((len(rows), ev))
            rows.append((c, m, limit, ev, mb, mn))
    decisions = decide([e for _, e in gated],
                       limits.alpha if alpha is None else alpha,
                       limits.pass_alpha if pass_alpha is None else pass_alpha)
    by_row = {i: d for (i, _), d in zip(gated, decisions, strict=True)}
    return [
        Verdict(c.label, m.name, m.higher_is_better, c.pairs is not None, ev.n, mb, mn,
                ev.estimate, ev.p_worse, ev.p_within, limit, by_row.get(i, INFO))
        for i, (c, m, limit, ev, mb, mn) in enumerate(rows)
    ]


def final(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """MORE DATA becomes INCONCLUSIVE once no more blocks will come."""
    from dataclasses import replace

    return [replace(v, verdict=INCONCLUSIVE) if v.verdict == MORE_DATA else v for v in verdicts]


# --- which runs may be compared ------------------------------------------------------


def _differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    diffs = [f"{f} {a.get(f)!r} vs {b.get(f)!r}" for f in WORKLOAD_FIELDS if a.get(f) != b.get(f)]
    diffs += [f"{f} {a.get(f)!r} vs {b.get(f)!r}" for f in PATTERN_FIELDS
              if (a.get(f) or None) != (b.get(f) or None)]
    return ", ".join(diffs)


def group(runs: Runs) -> dict[str, Runs]:
    """Runs by workload key, in first-seen order."""
    out: dict[str, Runs] = {}
    for p, r in runs:
        out.setdefault(workload_key(r.config), []).append((p, r))
    return out


def pattern_of(r: RunResult) -> str:
    """The run's pattern (``broadcast`` for files from before patterns existed)."""
    return str(r.config.get("pattern") or "broadcast")


def check_patterns(base: Runs, new: Runs) -> None:
    """Refuse runs of different patterns, naming which side holds which.

    Never overridden (not even by ``--allow-mixed``): a delivery, a task and a reply are
    different units, so their costs and rates do not compare.
    """
    pb, pn = sorted({pattern_of(r) for _, r in base}), sorted({pattern_of(r) for _, r in new})
    if len({*pb, *pn}) > 1:
        raise CompareError(f"runs of different patterns: BASE is {' + '.join(pb)}, NEW is "
                           f"{' + '.join(pn)}; a delivery, a task and a reply are not the "
                           "same unit, compare runs of one pattern")


MIXED_FIELDS: tuple[tuple[str, Callable[[RunResult], Any]], ...] = (
    ("host", lambda r: r.environment.get("hostname")),
    ("CPU model", lambda r: r.environment.get("cpu_model")),
)


def check_mixed(base: Runs, new: Runs, allow_mixed: bool) -> list[str]:
    """Refuse runs of different patterns (always: :func:`check_patterns`), hosts or CPU
    models (warnings instead when ``allow_mixed``)."""
    check_patterns(base, new)
    out = []
    for name, get in MIXED_FIELDS:
        seen = sorted({str(get(r)) for _, r in (*base, *new)})
        if len(seen) > 1:
            what = f"runs of different {name}s: {', '.join(seen)}"
            if not allow_mixed:
                raise CompareError(f"{what}; their costs are not comparable "
                                   "(--allow-mixed compares them anyway)")
            out.append(what)
    return out


def check_baseline(base: Runs, allow_degraded: bool) -> list[str]:
    """Refuse a baseline run that lost messages, failed, or was deliberately slowed.

    Returns warnings when ``allow_degraded`` lets such runs through.
    """
    warnings = []
    for p, r in base:
        problems = []
        if r.status != STATUS_OK or r.partial:
            problems.append(f"status {r.status}{' (partial)' if r.partial else ''}")
        if r.summary.counters.lost:
            problems.append(f"{r.summary.counters.lost:,} messages lost")
        for key in ("injected_cost_ns", "injected_work"):
            if r.environment.get(key):
                problems.append(f"slowed on purpose ({key} {r.environment[key]})")
        if not problems:
            continue
        what = f"baseline {p}: {', '.join(problems)}"
        if r.reasons:
            what += f" ({r.reasons[0]})"
        if not allow_degraded:
            raise CompareError(f"{what}; it is not a fair baseline "
                               "(--allow-degraded-baseline uses it anyway)")
        warnings.append(what)
    return warnings


def _start(r: RunResult) -> float | None:
    try:
        return datetime.fromisoformat(r.started_at).timestamp()
    except ValueError:
        return None


def interleaved(base: Runs, new: Runs) -> Pairs | None:
    """Pairs by position when the start times say the runs were interleaved in blocks.

    That is: as many runs on each side, and in time order every two
    consecutive runs are one base and one candidate. None otherwise (or when
    two runs share a start time, so the order cannot be told).
    """
    if len(base) != len(new) or not base:
        return None
    tagged = [(_start(r), 0, (p, r)) for p, r in base] + [(_start(r), 1, (p, r)) for p, r in new]
    if any(t is None for t, _, _ in tagged) or len({t for t, _, _ in tagged}) < len(tagged):
        return None
    tagged.sort(key=lambda x: x[0] or 0.0)
    pairs: Pairs = []
    for i in range(0, len(tagged), 2):
        (_, s1, a), (_, s2, b) = tagged[i], tagged[i + 1]
        if s1 == s2:
            return None
        pairs.append((a, b) if s1 == 0 else (b, a))
    return pairs


def comparisons(base: Runs, new: Runs) -> list[Comparison]:
    """One :class:`Comparison` per workload; refuse workloads present on one side only."""
    gb, gn = group(base), group(new)
    if set(gb) != set(gn):
        if len(gb) == 1 and len(gn) == 1:
            cb, cn = next(iter(gb.values()))[0][1].config, next(iter(gn.values()))[0][1].config
            raise CompareError(f"BASE and NEW ran different workloads: {_differences(cb, cn)}")
        only_b = [workload_label(v[0][1].config) for k, v in gb.items() if k not in gn]
        only_n = [workload_label(v[0][1].config) for k, v in gn.items() if k not in gb]
        raise CompareError(
            "BASE and NEW ran different workloads: only in BASE: "
            f"{', '.join(only_b) or 'none'}; only in NEW: {', '.join(only_n) or 'none'}"
        )
    return [Comparison(workload_label(runs[0][1].config), runs, gn[k], interleaved(runs, gn[k]))
            for k, runs in gb.items()]


def candidate_problems(c: Comparison) -> tuple[Comparison, list[str]]:
    """Drop failed candidate runs (and their blocks) and name them; so are candidate
    losses when the baseline had none."""
    problems = []
    base_lost = any(b.summary.counters.lost for _, b in c.base)
    bad = set()
    for p, r in c.new:
        if r.status == STATUS_FAILED:
            problems.append(f"{c.label}: NEW run {p} failed: {'; '.join(r.reasons) or '?'}")
            bad.add(p)
        elif r.summary.counters.lost and not base_lost:
            problems.append(f"{c.label}: NEW run {p} lost {r.summary.counters.lost:,} messages")
    new = [(p, r) for p, r in c.new if p not in bad]
    pairs = None if c.pairs is None else [(b, n) for b, n in c.pairs if n[0] not in bad]
    return Comparison(c.label, c.base, new, pairs), problems


def smallest_p(n: int, paired: bool, n_base: int = 0) -> float:
    """The smallest p-value ``n`` blocks (or ``n_base`` vs ``n`` runs) can ever give."""
    if paired:
        return sign_flip_p(np.arange(1.0, n + 1.0))
    return two_sample_p(np.arange(float(n_base)), np.arange(float(n_base), n_base + n))


def check_enough(cs: Sequence[Comparison], alpha: float) -> None:
    """Raise :class:`CompareError` when a workload's runs can never reach ``alpha``."""
    for c in cs:
        paired = c.pairs is not None
        n = len(c.pairs or []) if paired else len(c.new)
        if n < MIN_BLOCKS or smallest_p(n, paired, len(c.base)) > alpha:
            what = f"{n} blocks" if paired else f"{len(c.base)} vs {len(c.new)} runs"
            raise CompareError(f"{c.label}: {what} can never be significant at alpha "
                               f"{alpha:g}; run more (msgbench ci: at least 8 blocks)")

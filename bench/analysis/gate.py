"""Statistics of the regression gate: is NEW really worse than BASE, or is it noise?

Two conditions must both hold before a metric is called a regression:

1. a one-sided Mann-Whitney U test says NEW is worse than BASE (p < alpha); its
   null distribution is computed exactly (ties included) by counting rank-sum
   subsets, so it is right for the 3..10 trials a CI job can afford;
2. the bootstrap confidence interval of the ratio of medians (NEW / BASE)
   lies entirely beyond the threshold, so a tiny but consistent change (that a
   rank test alone would flag with enough trials) does not fail a build.

Pure numpy; no scipy. The second half applies the test to result files:
which runs may be compared, which metrics are gated and how hard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msgbench.analysis.labels import WORKLOAD_FIELDS, workload_key, workload_label
from msgbench.results.model import STATUS_FAILED, STATUS_OK, RunResult

DEFAULT_ALPHA = 0.05
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261125
"""Fixed, so the same files always give the same verdict."""

REGRESSION = "regression"
IMPROVED = "improved"
OK = "ok"
INFO = "info"
"""Reported, not gated (no threshold)."""


def rank_sum_p_less(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided Mann-Whitney p-value for H1 "values of ``x`` tend to be smaller than ``y``".

    Exact permutation distribution of the rank sum of ``x`` with mid-ranks for
    ties: the number of size-len(x) subsets of all ranks whose sum is at most
    the observed one, over all subsets. Returns 1.0 when either side is empty.
    """
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        return 1.0
    values = np.asarray([*x, *y], dtype=np.float64)
    ranks2 = _doubled_midranks(values)  # 2 x mid-rank: always an integer
    observed = int(ranks2[:m].sum())
    total = int(ranks2.sum())
    # counts[k, s]: subsets of k items (among those seen so far) with doubled rank sum s.
    counts = np.zeros((m + 1, total + 1), dtype=np.float64)
    counts[0, 0] = 1.0
    for r in ranks2:
        r = int(r)
        counts[1:, r:] += counts[:-1, : total + 1 - r].copy()
    dist = counts[m]
    p = float(dist[: observed + 1].sum() / dist.sum())
    return min(1.0, p)


def _doubled_midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks2 = np.empty(len(values), dtype=np.int64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        # ranks i+1 .. j+1 share their mean; doubled: (i + 1) + (j + 1)
        ranks2[order[i : j + 1]] = i + j + 2
        i = j + 1
    return ranks2


def bootstrap_median_ratio(
    base: Sequence[float],
    new: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(new) / median(base), two-sided at ``confidence``.

    Each side is resampled with replacement independently. A base median of
    zero gives an infinite ratio; callers should not gate such a metric.
    """
    b = np.asarray(base, dtype=np.float64)
    n = np.asarray(new, dtype=np.float64)
    rng = np.random.default_rng(seed)
    mb = np.median(rng.choice(b, size=(resamples, b.size)), axis=1)
    mn = np.median(rng.choice(n, size=(resamples, n.size)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mn / mb
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Verdict:
    """The evidence for one metric of one workload and the decision drawn from it."""

    metric: str
    higher_is_better: bool
    base_median: float
    new_median: float
    ratio: float
    ci_low: float
    ci_high: float
    p_worse: float
    """One-sided p-value of "NEW is worse than BASE"."""
    threshold: float | None
    """Fraction (0.05 = 5 %) the CI must lie beyond; None: reported only."""
    verdict: str
    n_base: int
    n_new: int


def judge(
    metric: str,
    base: Sequence[float],
    new: Sequence[float],
    higher_is_better: bool,
    threshold: float | None,
    alpha: float = DEFAULT_ALPHA,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Verdict:
    """Compare two samples of one metric.

    ``regression`` when the one-sided rank test is significant at ``alpha``
    *and* the whole bootstrap interval of the median ratio is beyond
    ``threshold`` in the bad direction; ``improved`` symmetrically; ``ok``
    otherwise; ``info`` when ``threshold`` is None or the base median is 0.
    """
    if not base or not new:
        raise ValueError(f"{metric}: both sides need at least one value")
    mb = float(np.median(base))
    mn = float(np.median(new))
    ratio = mn / mb if mb else float("nan")
    lo, hi = bootstrap_median_ratio(base, new, confidence)
    if higher_is_better:
        p_worse = rank_sum_p_less(new, base)
        p_better = rank_sum_p_less(base, new)
    else:
        p_worse = rank_sum_p_less(base, new)
        p_better = rank_sum_p_less(new, base)
    if threshold is None or not mb:
        verdict = INFO
    else:
        worse_beyond = hi < 1 - threshold if higher_is_better else lo > 1 + threshold
        better_beyond = lo > 1 + threshold if higher_is_better else hi < 1 - threshold
        if p_worse < alpha and worse_beyond:
            verdict = REGRESSION
        elif p_better < alpha and better_beyond:
            verdict = IMPROVED
        else:
            verdict = OK
    return Verdict(
        metric, higher_is_better, mb, mn, ratio, lo, hi, p_worse, threshold, verdict,
        len(base), len(new),
    )


# --- applying the gate to result files -------------------------------------------

Runs = list[tuple[Path, RunResult]]


class CompareError(Exception):
    """The comparison cannot be made; ``str(exc)`` is one line for the user (exit 2)."""


@dataclass(frozen=True)
class Limits:
    """Thresholds as fractions (None: report only), alpha and CI confidence."""

    throughput: float | None = 0.05
    p50: float | None = 0.15
    p99: float | None = 0.50
    p999: float | None = 1.00
    alpha: float = DEFAULT_ALPHA
    confidence: float = DEFAULT_CONFIDENCE


@dataclass(frozen=True)
class Metric:
    """A figure taken from each run, its good direction and which limit gates it."""

    name: str
    value: Callable[[RunResult], float]
    higher_is_better: bool
    limit: str | None
    latency: bool


METRICS = (
    Metric("msgs/CPU-s", lambda r: r.summary.msgs_per_cpu_s, True, "throughput", False),
    Metric("deliveries/s", lambda r: r.summary.deliveries_per_s, True, None, False),
    Metric("p50", lambda r: float(r.summary.latency_ns["p50"]), False, "p50", True),
    Metric("p99", lambda r: float(r.summary.latency_ns["p99"]), False, "p99", True),
    Metric("p99.9", lambda r: float(r.summary.latency_ns["p999"]), False, "p999", True),
)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    diffs = [f"{f} {a.get(f)!r} vs {b.get(f)!r}" for f in WORKLOAD_FIELDS if a.get(f) != b.get(f)]
    return ", ".join(diffs)


def group(runs: Runs) -> dict[str, Runs]:
    """Runs by workload key, in first-seen order."""
    out: dict[str, Runs] = {}
    for p, r in runs:
        out.setdefault(workload_key(r.config), []).append((p, r))
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
        if r.environment.get("injected_cost_ns"):
            problems.append(f"slowed on purpose (injected_cost_ns "
                            f"{r.environment['injected_cost_ns']})")
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


def pair(base: Runs, new: Runs) -> list[tuple[str, Runs, Runs]]:
    """(label, base runs, new runs) per workload; refuse workloads present on one side only."""
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
    return [(workload_label(runs[0][1].config), runs, gn[k]) for k, runs in gb.items()]


def _min_p(m: int, n: int) -> float:
    return 1.0 / math.comb(m + n, m)


def evaluate(pairs: list[tuple[str, Runs, Runs]], limits: Limits
             ) -> tuple[list[tuple[str, Verdict]], list[str]]:
    """Verdicts per workload and metric, and the candidate's correctness problems.

    Failed candidate runs are left out of the statistics and reported as
    problems; so are candidate losses when the baseline had none.
    """
    verdicts: list[tuple[str, Verdict]] = []
    problems: list[str] = []
    for label, base, new in pairs:
        good_new = []
        for p, r in new:
            if r.status == STATUS_FAILED:
                problems.append(f"{label}: NEW run {p} failed: {'; '.join(r.reasons) or '?'}")
            else:
                good_new.append((p, r))
                lost = r.summary.counters.lost
                if lost and not any(b.summary.counters.lost for _, b in base):
                    problems.append(f"{label}: NEW run {p} lost {lost:,} messages")
        if not good_new or (len(good_new) < len(new)
                            and _min_p(len(base), len(good_new)) >= limits.alpha):
            continue  # the failed runs are the finding; too few good ones left to test
        if _min_p(len(base), len(good_new)) >= limits.alpha:
            raise CompareError(
                f"{label}: {len(base)} vs {len(good_new)} runs can never be significant at "
                f"alpha {limits.alpha:g}; use at least 4 trials on each side"
            )
        closed = base[0][1].config["rate"] is None
        for m in METRICS:
            limit = getattr(limits, m.limit) if m.limit else None
            if m.latency and closed:
                limit = None  # latency under saturation is not a latency target
            v = judge(m.name, [m.value(r) for _, r in base], [m.value(r) for _, r in good_new],
                      m.higher_is_better, limit, limits.alpha, limits.confidence)
            verdicts.append((label, v))
    return verdicts, problems

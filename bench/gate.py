"""Statistics of the regression gate: is NEW really worse than BASE, or is it noise?

Two conditions must both hold before a metric is called a regression:

1. a one-sided Mann-Whitney U test says NEW is worse than BASE (p < alpha); its
   null distribution is computed exactly (ties included) by counting rank-sum
   subsets, so it is right for the 3..10 trials a CI job can afford;
2. the bootstrap confidence interval of the ratio of medians (NEW / BASE)
   lies entirely beyond the threshold, so a tiny but consistent change (that a
   rank test alone would flag with enough trials) does not fail a build.

Pure numpy; no scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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

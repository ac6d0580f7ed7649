"""The gate's statistics: sign-flip randomisation tests, sequential looks, Holm.

Why these and not a t-test or Mann-Whitney on two samples:

* ``msgbench ci`` runs **paired blocks**: one base and one candidate run back
  to back, in an order chosen by a fair coin. The statistic is the log ratio
  of the primary metric within each block, so a drift of the machine (another
  job starting, the CPU warming up) hits both halves of a block alike and
  cancels.
* Under "no change" the two runs of a block are exchangeable and the coin
  decides which of them is called the candidate, so the *sign* of each log
  ratio is a fair coin independent of its size and of every other block. A
  sign-flip randomisation test is therefore exact by design, whatever the
  noise, its distribution or its drift: the false-alarm rate is at most alpha
  (Fisher's randomisation argument, no normality, no equal variances).
* The statistic is the 10 % trimmed mean of the log ratios: almost as
  efficient as the mean on normal noise, and one wild block (a stall the
  contention check did not see) cannot decide alone. With 10 blocks it trims
  one at each end, which keeps the smallest attainable p-value (2/1024) below
  the per-look level of a 1 % budget spread over three looks.
* "The change is below the limit" is the same test on ``d - log(1 + limit)``
  in the other direction. That one assumes the candidate's effect is a shift
  of the log metric (noise symmetric around it), which is what a fixed amount
  of extra work per message produces; it is not exact whatever the noise, and
  a wrong PASS only means a missed regression, so it gets its own (larger)
  level.
* Sequential looks (10, 20, 30 blocks) spend the error budget by Bonferroni
  over the looks: valid for any stopping rule and any dependence between
  looks, simple to state, and only slightly conservative for three looks.
  Within a look, Holm's step-down spreads the look's level over every gated
  workload and metric (one budget for the whole suite).

scipy's :func:`scipy.stats.permutation_test` does the sign flips: exact
enumeration when 2**n is at most the resample count, otherwise a seeded Monte
Carlo whose p-value (count + 1) / (resamples + 1) is itself a valid p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

TRIM = 0.10
"""Fraction cut from each end before averaging the block log ratios."""
RESAMPLES = 9_999
"""Sign-flip resamples; n <= 13 blocks are enumerated exactly (2**13 < 9,999)."""
SEED = 20261202
"""Fixed, so the same blocks always give the same p-values."""
DEFAULT_LOOKS = (10, 20, 30)
DEFAULT_ALPHA = 0.01
"""Budget for false alarms (REGRESSION when nothing changed) over every look and hypothesis."""
DEFAULT_PASS_ALPHA = 0.05
"""Budget for a wrong PASS (a change at the limit declared below it)."""

REGRESSION = "REGRESSION"
PASS = "PASS"
MORE_DATA = "MORE DATA"
INCONCLUSIVE = "INCONCLUSIVE"
"""MORE DATA at the last look: neither shown slower nor shown within the limit."""


def trimmed_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The :data:`TRIM` trimmed mean of ``x`` along ``axis`` (scipy's ``trim_mean``)."""
    return np.asarray(stats.trim_mean(x, TRIM, axis=axis))


def sign_flip_p(d: Sequence[float] | np.ndarray, resamples: int = RESAMPLES,
                seed: int = SEED) -> float:
    """One-sided p-value of H1 "the centre of ``d`` is above 0" by random sign flips.

    Exact (every one of the 2**n sign patterns) when 2**n <= ``resamples``,
    else ``resamples`` seeded random patterns. Under H0 "each sign is a fair
    coin independent of the magnitudes" P(p <= a) <= a for every a. Fewer than
    2 values give 1.0 (no evidence).
    """
    x = np.asarray(d, dtype=np.float64)
    if x.size < 2:
        return 1.0
    res = stats.permutation_test(
        (x,), lambda v, axis: trimmed_mean(v, axis), permutation_type="samples",
        alternative="greater", n_resamples=resamples, vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def two_sample_p(base: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray,
                 resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """One-sided p-value of H1 "``new`` is centred above ``base``" by relabelling.

    For stored runs that were not interleaved in pairs: the difference of the
    trimmed means, under random reassignment of the labels (exact when the
    runs are exchangeable under H0). Returns 1.0 when either side has < 2 values.
    """
    b, n = np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if b.size < 2 or n.size < 2:
        return 1.0
    res = stats.permutation_test(
        (n, b), lambda x, y, axis: trimmed_mean(x, axis) - trimmed_mean(y, axis),
        permutation_type="independent", alternative="greater", n_resamples=resamples,
        vectorized=True, rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected with family-wise error <= ``alpha``.

    Sort the p-values; reject the k-th smallest while it is <= alpha / (m - k);
    stop at the first that is not.
    """
    m = len(pvalues)
    rejected = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if pvalues[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


def look_level(alpha: float, looks: Sequence[int]) -> float:
    """The level each look may spend: Bonferroni over the planned looks."""
    return alpha / max(1, len(looks))


@dataclass(frozen=True)
class Evidence:
    """Both one-sided tests for one hypothesis at one look."""

    n: int
    estimate: float
    """exp(trimmed mean of the log ratios) - 1: the change in the metric's bad direction."""
    p_worse: float
    """p-value of "the candidate is worse at all" (H0: no change)."""
    p_within: float
    """p-value of "the change is below the limit" (H0: change >= limit)."""


def evidence(d: Sequence[float] | np.ndarray, limit: float, paired: bool = True,
             base: Sequence[float] | None = None, resamples: int = RESAMPLES) -> Evidence:
    """Both tests on block log ratios ``d`` (bad direction positive), limit a fraction.

    With ``paired=False``, ``d`` holds the candidate's log values and ``base``
    the baseline's, tested by relabelling instead of sign flips.
    """
    shift = math.log1p(limit)
    if paired:
        x = np.asarray(d, dtype=np.float64)
        est = float(trimmed_mean(x)) if x.size else 0.0
        return Evidence(int(x.size), math.expm1(est), sign_flip_p(x, resamples),
                        sign_flip_p(shift - x, resamples))
    if base is None:
        raise ValueError("an unpaired comparison needs the baseline's values")
    n, b = np.asarray(d, dtype=np.float64), np.asarray(base, dtype=np.float64)
    est = float(trimmed_mean(n) - trimmed_mean(b)) if n.size and b.size else 0.0
    return Evidence(int(min(n.size, b.size)), math.expm1(est), two_sample_p(b, n, resamples),
                    two_sample_p(n - shift, b, resamples))


def decide(ev: Sequence[Evidence], alpha: float, pass_alpha: float) -> list[str]:
    """One look's verdict per hypothesis, Holm within the look for each kind of error.

    REGRESSION: "worse at all" rejected and "below the limit" not; PASS: "below
    the limit" rejected (a change shown to be smaller than the limit passes,
    even when it is also shown to be above zero); otherwise MORE DATA.
    ``alpha`` and ``pass_alpha`` are this look's levels (see :func:`look_level`).
    """
    worse = holm([e.p_worse for e in ev], alpha)
    within = holm([e.p_within for e in ev], pass_alpha)
    return [PASS if w else REGRESSION if s else MORE_DATA for s, w in zip(worse, within,
                                                                          strict=True)]


def sequential(d: Sequence[float] | np.ndarray, limit: float,
               looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = DEFAULT_ALPHA,
               pass_alpha: float = DEFAULT_PASS_ALPHA, resamples: int = RESAMPLES
               ) -> tuple[str, int, Evidence]:
    """The sequential gate for one hypothesis on a stream of block log ratios.

    Looks at the first ``looks[k]`` values of ``d``; returns the verdict, the
    blocks it used and the evidence of the deciding (or last) look.
    INCONCLUSIVE when the last look is still MORE DATA.
    """
    a, b = look_level(alpha, looks), look_level(pass_alpha, looks)
    x = np.asarray(d, dtype=np.float64)
    ev = evidence(x[:0], limit)
    for n in looks:
        ev = evidence(x[:n], limit, resamples=resamples)
        verdict = decide([ev], a, b)[0]
        if verdict != MORE_DATA:
            return verdict, ev.n, ev
    return INCONCLUSIVE, ev.n, ev

"""The work a task stands for: service times, and one slow worker.

``--work fixed:1ms | exp:1ms | lognormal:1ms,0.5`` gives each task a service time
(zero by default): fixed, exponential with that mean, or log-normal with that
mean and that sigma of the underlying normal. ``--slow-worker 0:x10`` makes
subscriber 0's tasks take ten times as long. A member of a shared group does its
tasks one after another, so its service times add up; it acknowledges a task
only when its work is done.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from msgbench.workload.values import ConfigError, parse_duration

_WORK = re.compile(r"^\s*(fixed|exp|lognormal):([^,]+)(?:,(.+))?\s*$")
_SLOW = re.compile(r"^\s*(\d+):x(\d+(?:\.\d+)?)\s*$")
MAX_MEAN_S = 10.0
"""Longest mean service time accepted: beyond it a run of seconds measures nothing."""
MAX_SLOWDOWN = 1000.0


@dataclass(frozen=True)
class Work:
    """A service-time distribution; ``mean_s`` 0 is no work."""

    kind: str = "fixed"
    mean_s: float = 0.0
    sigma: float = 0.0

    def sample_ns(self, n: int, rng: np.random.Generator, factor: float = 1.0
                  ) -> npt.NDArray[np.int64]:
        """``n`` service times in ns (times ``factor``, for a slow worker)."""
        mean_ns = self.mean_s * 1e9 * factor
        if not mean_ns or not n:
            return np.zeros(n, np.int64)
        if self.kind == "fixed":
            return np.full(n, round(mean_ns), np.int64)
        if self.kind == "exp":
            return rng.exponential(mean_ns, n).astype(np.int64)
        # log-normal with the given mean: mu = ln(mean) - sigma^2 / 2
        mu = math.log(mean_ns) - self.sigma ** 2 / 2
        return rng.lognormal(mu, self.sigma, n).astype(np.int64)

    def describe(self) -> str:
        """``exp:1ms``-style text, as the user wrote it (empty for no work)."""
        if not self.mean_s:
            return ""
        ms = f"{self.mean_s * 1e3:g}ms"
        return f"{self.kind}:{ms}" + (f",{self.sigma:g}" if self.kind == "lognormal" else "")


def parse_work(text: str | None) -> Work:
    """Parse ``--work``; raises :class:`ConfigError` with one line on anything else."""
    if not text or text.strip().lower() in ("0", "none"):
        return Work()
    m = _WORK.match(text)
    if not m:
        raise ConfigError(f"invalid --work {text!r}: use fixed:1ms, exp:1ms or lognormal:1ms,0.5")
    kind, mean, sigma = m.groups()
    mean_s = parse_duration(mean, "--work mean")
    if not 0 <= mean_s <= MAX_MEAN_S:
        raise ConfigError(f"--work mean must be between 0 and {MAX_MEAN_S:g} s")
    if kind == "lognormal":
        try:
            s = float(sigma) if sigma is not None else -1.0
        except ValueError:
            s = -1.0
        if not 0 < s <= 5:
            raise ConfigError("--work lognormal needs a sigma between 0 and 5: lognormal:1ms,0.5")
        return Work(kind, mean_s, s)
    if sigma is not None:
        raise ConfigError(f"--work {kind} takes no sigma: use {kind}:{mean}")
    return Work(kind, mean_s)


def parse_slow_worker(text: str | None) -> tuple[int, float] | None:
    """Parse ``--slow-worker SUB:xFACTOR`` (``0:x10``); None for none."""
    if not text or text.strip().lower() == "none":
        return None
    m = _SLOW.match(text)
    if not m:
        raise ConfigError(f"invalid --slow-worker {text!r}: use SUB:xFACTOR, e.g. 0:x10")
    factor = float(m.group(2))
    if not 1 <= factor <= MAX_SLOWDOWN:
        raise ConfigError(f"--slow-worker factor must be between 1 and {MAX_SLOWDOWN:g}")
    return int(m.group(1)), factor

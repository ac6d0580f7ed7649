"""Open-loop send schedules.

Message ``i`` of a publisher is due at ``start + i * 1e9 / rate`` nanoseconds,
always computed from the start and never from "now", so a stall makes
messages late (and shows in their latency) instead of quietly shifting the
schedule: the coordinated-omission correction wrk2 made popular.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Schedule:
    """A fixed-rate schedule starting at ``start_ns`` (monotonic ns)."""

    start_ns: int
    rate: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")

    def intended_ns(self, index: int) -> int:
        """When message ``index`` (0-based) is due."""
        return self.start_ns + int(index * NS_PER_S / self.rate)

    def intended_block(self, first: int, end: int) -> npt.NDArray[np.int64]:
        """:meth:`intended_ns` of messages ``first`` .. ``end - 1`` at once (the same float
        arithmetic, element by element, so the same values for the float rates the driver
        uses)."""
        # In floats from the start, as Python converts the exact product: an int64 product
        # would overflow past 9.2e9 messages.
        index = np.arange(first, end, dtype=np.int64).astype(np.float64)
        return self.start_ns + (index * NS_PER_S / self.rate).astype(np.int64)

    def due_count(self, now_ns: int) -> int:
        """How many messages are due at ``now_ns`` (the index of the first not yet due)."""
        if now_ns < self.start_ns:
            return 0
        count = int((now_ns - self.start_ns) * self.rate / NS_PER_S) + 1
        # float rounding may be off by one at an exact boundary; settle it exactly
        while count > 0 and self.intended_ns(count - 1) > now_ns:
            count -= 1
        while self.intended_ns(count) <= now_ns:
            count += 1
        return count

    def count_before(self, t_ns: int) -> int:
        """How many messages are due strictly before ``t_ns``."""
        return self.due_count(t_ns - 1)

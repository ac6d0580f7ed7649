"""Latency histograms recorded in bulk, encoded for transport and merged exactly.

HdrHistogram's ``record_value`` costs about 0.7 us a call in pure Python, more
than the rest of a delivery. The hot path therefore only appends the value to
an ``array('q')``; :meth:`Histogram.record_array` then bins the whole buffer
with numpy, using the same index arithmetic as HdrHistogram itself.
Histograms cross processes in HdrHistogram's standard encoded form and are
merged count by count, never by averaging percentiles.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3_600_000_000_000  # one hour: anything slower is a hang, not a latency
SIGNIFICANT_FIGURES = 3

PERCENTILES: Mapping[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}

_OUTER = struct.Struct(">II")
"""HdrHistogram's compressed wrapper: cookie, length of the zlib part."""
_PAYLOAD = struct.Struct(">IIIIqqd")
"""The decompressed payload header: cookie, counts bytes, normalizing offset, significant
figures, lowest and highest trackable value, conversion ratio; varint counts follow."""
_VARINT_MAX_BYTES = 9
"""A 64-bit count takes at most 9 bytes in HdrHistogram's varint encoding (its own bound)."""


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one histogram in nanoseconds; ``count`` values in all."""

    count: int
    min: int
    mean: float
    p50: int
    p90: int
    p99: int
    p999: int
    max: int

    def to_json(self) -> dict[str, int | float]:
        """A JSON-ready dict with the field names above."""
        return {
            "count": self.count,
            "min": self.min,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
        }


class Histogram:
    """An HdrHistogram of nanosecond values with bulk recording and range accounting.

    Values below zero or above :data:`HIGHEST_NS` are clamped into range and
    counted in :attr:`out_of_range`, so they are never silently dropped.
    """

    def __init__(self) -> None:
        self.hdr = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)
        self.out_of_range = 0
        h = self.hdr
        self._shift_base = h.unit_magnitude + h.sub_bucket_half_count_magnitude + 1
        self._mask = np.int64(h.sub_bucket_mask)

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return int(self.hdr.get_total_count())

    def record_array(self, values: array[int] | np.ndarray | Iterable[int]) -> None:
        """Record every value of ``values`` (nanoseconds) in one vectorised pass."""
        if isinstance(values, array):
            v = np.frombuffer(values, dtype=np.int64) if len(values) else np.empty(0, np.int64)
        else:
            v = np.asarray(values if isinstance(values, np.ndarray) else list(values), np.int64)
        if v.size == 0:
            return
        lo = int(v.min())
        hi = int(v.max())
        if lo < 0 or hi > HIGHEST_NS:
            outside = int(np.count_nonzero((v < 0) | (v > HIGHEST_NS)))
            self.out_of_range += outside
            v = np.clip(v, 0, HIGHEST_NS)
            lo, hi = max(lo, 0), min(hi, HIGHEST_NS)
        h = self.hdr
        # bit_length(v | mask) via frexp: exact, because every value is < 2**53.
        # HdrHistogram's index ((bucket + 1) << m) + sub - 2**m simplifies to
        # (bucket << m) + sub; shifting by the int32 exponent array directly is
        # four times faster than converting it to int64 first.
        bucket = np.frexp((v | self._mask).astype(np.float64))[1] - self._shift_base
        sub_bucket = np.right_shift(v, bucket + h.unit_magnitude, dtype=np.int64)
        index = (bucket.astype(np.int64) << h.sub_bucket_half_count_magnitude) + sub_bucket
        counts = np.ctypeslib.as_array(h.counts)
        counts += np.bincount(index, minlength=h.counts_len).astype(counts.dtype)
        h.total_count += int(v.size)
        h.min_value = min(h.min_value, lo)
        h.max_value = max(h.max_value, hi)

    def add(self, other: Histogram) -> None:
        """Add ``other``'s counts to this histogram."""
        if other.count:
            self.hdr.add(other.hdr)
        self.out_of_range += other.out_of_range

    def encode(self) -> str:
        """HdrHistogram's compressed base64 form (empty string for an empty histogram)."""
        if self.count == 0:
            return ""
        return str(self.hdr.encode().decode("ascii"))

    @classmethod
    def decode(cls, encoded: str, out_of_range: int = 0) -> Histogram:
        """Inverse of :meth:`encode`.

        Raises ValueError with one line for anything that is not a histogram msgbench
        wrote: bad base64 or zlib, other settings (whose counts array could be any size),
        or a payload that would decompress past the largest one these settings can have
        (a zlib bomb is refused after at most that many bytes, not after gigabytes).
        """
        hist = cls()
        if encoded:
            check_encoded(encoded, hist.hdr.counts_len)
            try:
                hist.hdr.decode_and_add(encoded)
            except Exception as exc:  # binascii, zlib, hdrh's own: all mean "corrupt"
                raise ValueError(f"corrupt encoded histogram: {exc}") from None
        hist.out_of_range = out_of_range
        return hist

    def _counts(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.hdr.counts)

    def _index_values(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lowest value and width of the bins at ``index``, as HdrHistogram's
        ``get_value_from_index`` and ``_hdr_size_of_equiv_value_range`` compute them."""
        h = self.hdr
        index = index.astype(np.int64)
        bucket = (index >> h.sub_bucket_half_count_magnitude) - 1
        sub = (index & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
        first = bucket < 0
        sub = np.where(first, sub - h.sub_bucket_half_count, sub)
        bucket = np.where(first, 0, bucket)
        return sub << (bucket + h.unit_magnitude), np.int64(1) << (h.unit_magnitude + bucket)

    def value_at(self, percentile: float) -> int:
        """The value at ``percentile`` (0-100), 0 for an empty histogram: exactly
        HdrHistogram's ``get_value_at_percentile``, by a cumulative sum instead of its
        Python loop over every bin (milliseconds a call, and a result asks for hundreds)."""
        total = self.count
        if not total:
            return 0
        target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
        index = int(np.searchsorted(np.cumsum(self._counts()), target))
        lowest, width = self._index_values(np.array([index]))
        return int(lowest[0] + width[0] - 1) if percentile else int(lowest[0])

    def mean(self) -> float:
        """The mean, exactly HdrHistogram's ``get_mean_value`` (each bin at its middle), over
        the non-empty bins only: its own iterator takes most of a second on a full run."""
        total = self.count
        if not total:
            return 0.0
        counts = self._counts()
        index = np.flatnonzero(counts)
        lowest, width = self._index_values(index)
        middles = lowest + (width >> 1)
        # Python ints: count x value can pass 2**63 (a billion values near an hour)
        return float(sum(int(c) * int(m) for c, m in zip(counts[index], middles, strict=True))
                     ) / total

    def summary(self) -> LatencySummary:
        """Percentiles, min, mean and max."""
        if self.count == 0:
            return LatencySummary(0, 0, 0.0, 0, 0, 0, 0, 0)
        h = self.hdr
        return LatencySummary(
            count=self.count,
            min=int(h.get_min_value()),
            mean=self.mean(),
            p50=self.value_at(50.0),
            p90=self.value_at(90.0),
            p99=self.value_at(99.0),
            p999=self.value_at(99.9),
            max=int(h.get_max_value()),
        )


def check_encoded(encoded: str, counts_len: int) -> None:
    """Refuse ``encoded`` (ValueError, one line) unless it is HdrHistogram's compressed form
    with msgbench's settings and at most ``counts_len`` counts, decompressing no more than
    such a payload can take."""
    if not isinstance(encoded, str) or not encoded.isascii():
        raise ValueError("corrupt encoded histogram: not base64 text")
    limit = _PAYLOAD.size + counts_len * _VARINT_MAX_BYTES
    if len(encoded) > (limit + _OUTER.size) * 4 // 3 + 8:
        raise ValueError(f"corrupt encoded histogram: {len(encoded)} characters, more than "
                         "any msgbench histogram needs")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"corrupt encoded histogram: {exc}") from None
    if len(raw) < _OUTER.size:
        raise ValueError("corrupt encoded histogram: too short")
    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(raw[_OUTER.size :], limit + 1)
    except zlib.error as exc:
        raise ValueError(f"corrupt encoded histogram: {exc}") from None
    if len(data) > limit or inflate.unconsumed_tail:
        raise ValueError(f"corrupt encoded histogram: it expands past {limit} bytes, the "
                         "most a msgbench histogram can take (a zlib bomb?)")
    if len(data) < _PAYLOAD.size:
        raise ValueError("corrupt encoded histogram: payload too short")
    _, _, _, figures, lowest, highest, _ = _PAYLOAD.unpack_from(data)
    if (lowest, highest, figures) != (LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES):
        raise ValueError(f"encoded histogram has other settings (range {lowest}..{highest}, "
                         f"{figures} figures) than msgbench's")

from __future__ import annotations

import random
from array import array

import numpy as np
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from msgbench.accounting.histogram import HIGHEST_NS, LOWEST_NS, SIGNIFICANT_FIGURES, Histogram


def reference(values: list[int]) -> HdrHistogram:
    h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)
    for v in values:
        h.record_value(v)
    return h


def test_bulk_recording_matches_record_value_exactly() -> None:
    rng = random.Random(7)
    values = [rng.randint(0, 10**10) for _ in range(20_000)]
    values += [0, 1, 2047, 2048, 2049, 4095, 4096, HIGHEST_NS, 2**31, 2**32 + 1]
    ours = Histogram()
    ours.record_array(array("q", values))
    ref = reference(values)
    assert np.array_equal(np.ctypeslib.as_array(ours.hdr.counts), np.ctypeslib.as_array(ref.counts))
    assert ours.count == ref.get_total_count()
    assert ours.hdr.get_max_value() == ref.get_max_value()
    for p in (50.0, 90.0, 99.0, 99.9, 100.0):
        assert ours.value_at(p) == ref.get_value_at_percentile(p)


def test_out_of_range_values_are_counted_not_dropped() -> None:
    h = Histogram()
    h.record_array([-5, 10, HIGHEST_NS * 2])
    assert h.count == 3
    assert h.out_of_range == 2


def test_merge_of_encoded_parts_equals_one_histogram() -> None:
    rng = random.Random(3)
    parts = [[rng.randint(1, 10**7) for _ in range(5_000)] for _ in range(4)]
    merged = Histogram()
    for part in parts:
        h = Histogram()
        h.record_array(part)
        merged.add(Histogram.decode(h.encode(), h.out_of_range))
    whole = Histogram()
    whole.record_array([v for part in parts for v in part])
    assert merged.summary() == whole.summary()
    assert merged.count == 20_000


def test_empty_histogram_encodes_and_summarises_to_zero() -> None:
    h = Histogram()
    assert h.encode() == ""
    assert Histogram.decode("").count == 0
    assert h.summary().p99 == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=HIGHEST_NS), min_size=1, max_size=400),
       st.integers(min_value=1, max_value=5))
def test_mean_and_percentiles_are_hdrhistograms_own(values: list[int], repeat: int) -> None:
    """The numpy mean and percentiles give what HdrHistogram's own loops give, exactly."""
    h = Histogram()
    h.record_array(values * repeat)
    assert h.mean() == h.hdr.get_mean_value()
    for p in (0.0, 0.1, 1.0, 50.0, 90.0, 99.0, 99.9, 99.999, 100.0):
        assert h.value_at(p) == h.hdr.get_value_at_percentile(p), p

"""Result files are validated on load: a bad one is one clean line, never a traceback."""

from __future__ import annotations

import base64
import copy
import json
import struct
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import msgbench_argv
from msgbench.accounting.histogram import Histogram
from msgbench.analysis.report import Row, cells
from msgbench.results.model import ResultError, RunResult, load
from msgbench.results.validate import validate_document, validate_fields

DATA = Path(__file__).resolve().parent / "data"

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted(p for p in (ROOT / "results" / "published").rglob("*.json")
                   if json.loads(p.read_text()).get("schema") == "msgbench.run")
"""The published run results (capacity documents beside them have a schema of their own)."""
BOMB_BYTES = 256 * 1024 * 1024
DECODE_MEMORY_BOUND = 8 * 1024 * 1024


def _doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PUBLISHED[0].read_text())
    return data


def _bomb() -> str:
    """A valid-looking HdrHistogram wrapper around 256 MiB of zeros (about 250 KB)."""
    payload = zlib.compress(bytes(BOMB_BYTES), 9)
    return base64.b64encode(struct.pack(">II", 0x1C849304, len(payload)) + payload).decode()


def _foreign_histogram() -> str:
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 2**62, 5)  # a counts array msgbench never allocates
    h.record_value(10)
    return str(h.encode().decode())


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


BAD = [
    ("summary.delivered", "lots", "summary.delivered: expected a whole number"),
    ("summary.latency_ns", None, "summary.latency_ns: expected an object"),
    ("summary.latency_ns.p99", "slow", "summary.latency_ns.p99"),
    ("summary.lost", -5, "out of range"),
    ("summary.deliveries_per_s", float("nan"), "not a finite number"),
    ("summary.msgs_per_cpu_s", float("inf"), "not a finite number"),
    ("config.pubs", "two", "config.pubs"),
    ("config.rate", "fast", "config.rate"),
    ("environment", {"x": _deep(200)}, "nested too deeply"),
    ("status", "great", "status: must be one of"),
    ("series.0.delivered", 1.5, "series[0].delivered"),
    ("subscribers", {"a": 1}, "subscribers: expected a list"),
    ("partial", "no", "partial: expected true or false"),
    ("histograms.latency", "not base64!", "corrupt encoded histogram"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_mistyped_fields_are_one_line(path: str, value: Any, message: str) -> None:
    with pytest.raises(ResultError, match="malformed result document") as err:
        RunResult.from_json(_set(_doc(), path, value))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_fields_are_named() -> None:
    doc = _doc()
    del doc["summary"]["duration_s"]
    with pytest.raises(ResultError, match=r"summary\.duration_s: missing"):
        validate_document(doc)


def test_every_published_result_is_valid() -> None:
    assert PUBLISHED
    for p in PUBLISHED:
        validate_document(load(p).to_json())  # load validates the file as written, too


def test_zlib_bomb_is_refused_before_it_costs_memory() -> None:
    bomb = _bomb()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="zlib bomb"):
            Histogram.decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < DECODE_MEMORY_BOUND, f"decoding the bomb took {peak >> 20} MiB"
    with pytest.raises(ValueError, match="other settings"):
        Histogram.decode(_foreign_histogram())
    h = Histogram()
    h.record_array(np.arange(1, 3_600_000_000_000, 99_999_989))  # every bucket in range
    assert Histogram.decode(h.encode()).count == h.count


def test_nan_and_deep_nesting_in_a_file(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    text = json.dumps(_doc()).replace('"deliveries_per_s": ', '"deliveries_per_s": NaN, "x":')
    p.write_text(text)
    with pytest.raises(ResultError, match="not a finite number"):
        load(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ResultError, match="nested too deeply"):
        load(p)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


def _paths(doc: Any, prefix: str = "") -> list[str]:
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) \
        else ()
    for k, v in items:
        path = f"{prefix}{k}"
        out.append(path)
        if k not in ("histograms", "histogram"):
            out += _paths(v, path + ".")
    return out


DOC = _doc()
PATHS = _paths(DOC)


def _usable(result: RunResult) -> None:
    """What report, compare and plot read from a result must work on any valid one."""
    cells(Row.from_result("x.json", result))
    for key in ("p50", "p99", "p999", "max"):
        float(result.summary.latency_ns[key])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_any_change_to_a_valid_document_loads_cleanly_or_is_refused(path: str,
                                                                    value: Any) -> None:
    try:
        result = RunResult.from_json(_set(DOC, path, value))
    except ResultError as exc:
        assert "\n" not in str(exc)
        return
    _usable(result)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_is_refused_cleanly(value: Any) -> None:
    with pytest.raises(ResultError):
        RunResult.from_json(value)
    if isinstance(value, dict):
        with pytest.raises(ResultError):
            RunResult.from_json({**value, "schema": "msgbench.run", "schema_version": 1})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_refused_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                       data: bytes) -> None:
    p = tmp_path_factory.mktemp("fuzz") / "r.json"
    p.write_bytes(data)
    with pytest.raises(ResultError):
        load(p)


@pytest.mark.parametrize("command", [["report"], ["plot", "-o", "{tmp}/x.png"],
                                     ["export", "--hgrm", "{tmp}/x.hgrm"]])
def test_commands_refuse_a_bad_file_in_one_line(tmp_path: Path, command: list[str]) -> None:
    import subprocess

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set(_doc(), "summary.delivered", "lots")))
    argv = msgbench_argv(*[c.replace("{tmp}", str(tmp_path)) for c in command], str(bad))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "summary.delivered" in r.stderr


def test_compare_refuses_nan_in_one_line(tmp_path: Path) -> None:
    import subprocess

    for i in range(8):
        d = _set(_doc(), "summary.msgs_per_cpu_s", float("nan") if i == 7 else 1000.0 + i)
        p = tmp_path / ("base" if i < 4 else "new") / f"{i}.json"
        p.parent.mkdir(exist_ok=True)
        p.write_text(json.dumps(d))
    argv = msgbench_argv("compare", str(tmp_path / "base"), str(tmp_path / "new"))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a finite number" in r.stderr


@dataclass(frozen=True)
class Inner:
    delivered: int = 0


@dataclass(frozen=True)
class Outer:
    inner: Inner
    rate: float


def test_a_dataclass_field_may_be_written_flattened_into_its_parent() -> None:
    validate_fields(Outer, {"rate": 1.0, "delivered": 5})
    validate_fields(Outer, {"rate": 1.0, "inner": {"delivered": 5}})
    with pytest.raises(ResultError, match=r"outer\.delivered: expected a whole number"):
        validate_fields(Outer, {"rate": 1.0, "delivered": "lots"}, "outer")


@pytest.mark.parametrize(("path", "value", "says"), [
    (("subscribers", 0, "sub"), "first", "subscribers[0].sub"),
    (("subscribers", 0, "delivered"), -3, "subscribers[0].delivered"),
    (("groups", "g0", "jain"), "fair", "groups[g0].jain"),
    (("groups", "g0", "shares"), None, "groups[g0].shares"),
    (("legs", "task_service", "p99"), "slow", "legs[task_service].p99"),
])
def test_the_records_of_subscribers_groups_and_legs_are_checked(
        path: tuple[Any, ...], value: Any, says: str) -> None:
    doc = json.loads((DATA / "tasks-result.json").read_text())
    *parents, last = path
    node = doc
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    with pytest.raises(ResultError, match=says.replace("[", r"\[").replace("]", r"\]")):
        RunResult.from_json(doc)


@pytest.mark.parametrize(("key", "value"), [("rate", "fast"), ("p99_ns", -1),
                                            ("passed", "yes")])
def test_a_capacity_document_is_checked_like_a_run_result(tmp_path: Path, key: str,
                                                          value: Any) -> None:
    from msgbench.results.capacity import load_capacity

    doc = json.loads((DATA / "capacity-result.json").read_text())
    doc["steps"][0][key] = value
    bad = tmp_path / "capacity.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match=rf"steps\[0\]\.{key}"):
        load_capacity(bad)

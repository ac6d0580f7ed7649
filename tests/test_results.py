from __future__ import annotations

import json
from pathlib import Path

import pytest

from msgbench.accounting.counters import Counters
from msgbench.accounting.histogram import LatencySummary
from msgbench.results.model import ResultError, RunResult, SecondStats, Summary, load, write
from msgbench.results.schema import SCHEMA_VERSION
from msgbench.workload.config import RunConfig


def sample_result() -> RunResult:
    lat = LatencySummary(10, 1, 2.0, 2, 3, 4, 5, 6).to_json()
    summary = Summary(Counters(published=10, expected=10, delivered=10), 1.0, 10.0, 0.001, 0.5,
                      20.0, lat, lat, lat)
    return RunResult(
        config=RunConfig().to_json(),
        environment={"python": "3"},
        status="ok",
        reasons=[],
        partial=False,
        started_at="now",
        summary=summary,
        processes=[],
        series=[SecondStats(0, 10, 10, 0, 0, 0, 1, 2, 3)],
        histograms={"latency": ""},
        subscribers=[],
    )


def test_round_trip(tmp_path: Path) -> None:
    r = sample_result()
    path = write(r, tmp_path / "a" / "r.json")
    assert load(path) == r
    assert not list(path.parent.glob(".*tmp")), "temporary file left behind"


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    doc = sample_result().to_json()
    doc["schema_version"] = 99
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="schema version 99"):
        load(p)


def test_corrupt_and_foreign_files_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ResultError, match="not valid JSON"):
        load(p)
    p.write_text('{"hello": 1}')
    with pytest.raises(ResultError, match="not a msgbench"):
        load(p)
    with pytest.raises(ResultError, match="cannot read"):
        load(tmp_path / "missing.json")


def test_passwords_in_url_options_never_reach_the_result() -> None:
    from msgbench.results.assemble import without_secrets

    cfg = {"target": "redis", "target_options": {"redis_url": "redis://:s3cret@127.0.0.1:1/0",
                                                 "hwm": 5}}
    out = without_secrets(cfg)
    assert "s3cret" not in json.dumps(out)
    assert out["target_options"] == {"redis_url": "redis://:***@127.0.0.1:1/0", "hwm": 5}


def test_missing_config_and_corrupt_histograms_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    doc = sample_result().to_json()
    del doc["config"]["rate"]
    p.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="config lacks rate"):
        load(p)
    doc = sample_result().to_json()
    doc["histograms"]["latency"] = "HISTFAAAAC*not base64*"
    p.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="corrupt encoded histogram"):
        load(p)


PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published"
V1_FIXTURE = Path(__file__).resolve().parent / "data" / "v1-result.json"


def test_published_version_1_files_load_as_broadcast_runs() -> None:
    from msgbench.analysis.report import Row, render

    files = sorted(p for p in PUBLISHED.rglob("*.json")
                   if json.loads(p.read_text()).get("schema") == "msgbench.run")
    assert files, "the published results are part of the repository"
    files.append(V1_FIXTURE)  # published by msgbench 0.1 before schema 2: must keep loading
    v1 = [f for f in files if json.loads(f.read_text())["schema_version"] == 1]
    assert v1
    rows = []
    for f in files:
        r = load(f)
        assert r.schema_version == SCHEMA_VERSION
        if f in v1:  # written before patterns existed: broadcast by definition
            assert r.config["pattern"] == "broadcast"
        assert r.summary.counters.lost == max(0, r.summary.counters.expected
                                              - r.summary.counters.delivered)
        if r.config["pattern"] == "broadcast":
            rows.append(Row.from_result(f, r))
    if v1:  # the loader still branches on version 1 files, and they render
        assert "inproc" in render(rows, "text")
        raw = json.loads(v1[0].read_text())
        assert load(v1[0]).summary.counters.delivered == raw["summary"]["delivered"]


def test_a_version_1_document_is_upgraded_and_unknown_keys_are_tolerated(tmp_path: Path) -> None:
    doc = sample_result().to_json()
    doc["schema_version"] = 1
    del doc["config"]["pattern"]
    doc["subscribers"] = [{"sub": 0, "topic": 0, "delivered": 10, "disconnected": 1}]
    doc["from_the_future"] = {"x": 1}
    doc["summary"]["a_new_counter"] = 5
    doc["series"][0]["new_field"] = 1
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    r = load(p)
    assert r.config["pattern"] == "broadcast"
    assert r.subscribers[0]["disconnected_subscribers"] == 1
    assert r.summary.counters.delivered == 10


def test_a_newer_version_says_so() -> None:
    doc = sample_result().to_json()
    doc["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ResultError, match="newer msgbench"):
        RunResult.from_json(doc)


def test_the_schema_history_lists_every_version() -> None:
    from msgbench.results.schema import HISTORY

    assert [c.version for c in HISTORY] == list(range(1, SCHEMA_VERSION + 1))
    assert all(c.what and c.date for c in HISTORY)


def test_no_field_of_the_format_changes_without_a_new_schema_version() -> None:
    from msgbench.results.fingerprint import fingerprint
    from msgbench.results.schema import HISTORY

    assert HISTORY[-1].fields == fingerprint(), (
        "a field of the result format changed without a schema version bump: add a HISTORY "
        f"entry (fields={fingerprint()!r}) and an upgrade from version {SCHEMA_VERSION}")


def test_the_fingerprint_sees_a_field_added_anywhere() -> None:
    import dataclasses

    from msgbench.accounting.counters import Counters
    from msgbench.results.fingerprint import ROOTS, fingerprint
    from msgbench.results.records import GroupRecord

    # a counter added to Counters (held by the summary and by every subscriber record)
    more = dataclasses.make_dataclass("Counters", [("sparks", int, 0)], bases=(Counters,),
                                      frozen=True)
    record = dataclasses.make_dataclass(
        "SubscriberRecord", [("sub", int), ("counters", more, dataclasses.field(
            default_factory=more))], frozen=True)
    group = dataclasses.make_dataclass("GroupRecord", [("spread", float, 0.0)],
                                       bases=(GroupRecord,), frozen=True)
    assert len({fingerprint(), fingerprint((*ROOTS, record)), fingerprint((*ROOTS, group))}) == 3


def test_version_3_files_read_as_version_4() -> None:
    doc = sample_result().to_json()
    doc["schema_version"] = 3
    for key in ("errors", "injected_units", "injected_cpu_ns"):
        doc["summary"].pop(key, None)
    r = RunResult.from_json(doc)
    assert r.schema_version == SCHEMA_VERSION == 4 and r.summary.counters.errors == 0

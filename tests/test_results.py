from __future__ import annotations

import json
from pathlib import Path

import pytest

from msgbench.accounting.histogram import LatencySummary
from msgbench.results.model import ResultError, RunResult, SecondStats, Summary, load, write
from msgbench.workload.config import RunConfig


def sample_result() -> RunResult:
    lat = LatencySummary(10, 1, 2.0, 2, 3, 4, 5, 6).to_json()
    summary = Summary(10, 10, 10, 0, 0, 0, 0, 0, 0, 1.0, 10.0, 0.001, 0.5, 20.0, lat, lat, lat, 0)
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
    from msgbench.run.coordinator import _without_secrets

    cfg = {"target": "redis", "target_options": {"redis_url": "redis://:s3cret@127.0.0.1:1/0",
                                                 "hwm": 5}}
    out = _without_secrets(cfg)
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

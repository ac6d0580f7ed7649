"""scripts/publish_results.py: the published set is replaced as a whole, never half."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish_results.py"
TINY_SUITE = {"pubs": [1], "subs": [2], "rate": ["500"], "duration": "0.5s", "warmup": "0s",
              "size": [64], "trials": 1}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("publish_results", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish_results"] = module
    spec.loader.exec_module(module)
    return module


def _setup(tmp_path: Path) -> tuple[Path, list[str]]:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(TINY_SUITE))
    results = tmp_path / "results"
    stale = results / "published"
    stale.mkdir(parents=True)
    (stale / "stale.json").write_text("{}")  # not even a valid result: must not survive
    return results, ["--results-dir", str(results), "--suite", str(suite), "--targets", "inproc"]


def test_a_run_replaces_the_published_set(tmp_path: Path) -> None:
    results, args = _setup(tmp_path)
    assert _script().main(args) == 0
    published = sorted(p.name for p in (results / "published").glob("*.json"))
    assert len(published) == 1 and published != ["stale.json"]
    assert "inproc" in (results / "README.md").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["README.md", "published"]
    assert _script().main([*args, "--no-run"]) == 0  # only rewrites the README ...
    readme = (results / "README.md").read_text()
    assert "--no-run" not in readme  # ... which still names the command that redoes it all
    assert published == sorted(p.name for p in (results / "published").glob("*.json"))


def test_an_interrupted_run_leaves_the_published_set_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results, args = _setup(tmp_path)
    script = _script()

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "run_jobs", interrupted)
    assert script.main(args) == 130
    assert [p.name for p in (results / "published").iterdir()] == ["stale.json"]
    assert "published is unchanged" in capsys.readouterr().err.replace(str(results) + "/", "")
    assert len(list(results.glob("published-*.partial"))) == 1

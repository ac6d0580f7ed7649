"""scripts/publish_results.py: the three questions measured, tables with computed takeaways,
and the published set replaced as a whole, never half."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish_results.py"
TINY = ["--targets", "inproc", "--pubs", "1", "--subs", "2", "--fanout-subs", "1,4",
        "--fanout-deliveries", "400", "--sizes", "64,1024", "--duration", "0.5s",
        "--warmup", "0s", "--budget", "50s"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("publish_results", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish_results"] = module
    spec.loader.exec_module(module)
    return module


def _setup(tmp_path: Path) -> tuple[Path, list[str]]:
    results = tmp_path / "results"
    stale = results / "published"
    stale.mkdir(parents=True)
    (stale / "stale.json").write_text("{}")  # not even a valid result: must not survive
    return results, ["--results-dir", str(results), *TINY]


def test_a_run_answers_the_questions_and_replaces_the_published_set(tmp_path: Path) -> None:
    results, args = _setup(tmp_path)
    assert _script().main(args) == 0
    published = results / "published"
    assert not (published / "stale.json").exists()
    assert len(list((published / "capacity").glob("*.json"))) == 1
    assert len(list((published / "fanout").glob("*.json"))) == 2
    readme = (results / "README.md").read_text()
    for heading in ("## Capacity at 1 x 2, 64 B", "## Fan-out: 1 publisher",
                    "## Message size at 1 x 2", "## Machine"):
        assert heading in readme
    assert "Highest 1 x 2 capacity: **inproc**" in readme or "No design sustained" in readme
    assert "_Measured on " in readme and "Measuring took" in readme
    assert (published / "curves.png").read_bytes().startswith(b"\x89PNG")
    before = sorted(p.name for p in published.rglob("*.json"))
    assert _script().main([*args, "--no-run"]) == 0  # only rewrites the README ...
    again = (results / "README.md").read_text()
    assert "--no-run" not in again  # ... which still names the command that redoes it all
    assert sorted(p.name for p in published.rglob("*.json")) == before


def test_an_interrupted_run_leaves_the_published_set_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results, args = _setup(tmp_path)
    script = _script()

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "measure", interrupted)
    assert script.main(args) == 130
    assert [p.name for p in (results / "published").iterdir()] == ["stale.json"]
    assert "published is unchanged" in capsys.readouterr().err.replace(str(results) + "/", "")
    assert len(list(results.glob("published-*.partial"))) == 1


def test_bad_input_is_exit_2(tmp_path: Path) -> None:
    _, args = _setup(tmp_path)
    assert _script().main([*args, "--sizes", "big"]) == 2
    assert _script().main([*args, "--budget", "soon"]) == 2

"""scripts/publish_results.py: the broadcast, task and request/reply questions measured,
tables with computed takeaways, designs that do not carry a pattern skipped with a line, and
the published set replaced as a whole, never half."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from msgbench.analysis import pattern_tables
from msgbench.analysis.rpc_report import RpcRow
from msgbench.analysis.task_report import TaskRow
from msgbench.results.capacity import load_capacity
from msgbench.results.model import load

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish_results.py"
TINY = ["--targets", "inproc", "--pubs", "1", "--subs", "2", "--fanout-subs", "1,4",
        "--fanout-deliveries", "400", "--sizes", "64,1024", "--duration", "0.5s",
        "--warmup", "0s", "--budget", "50s", "--sections", "broadcast"]
ROOT = SCRIPT.parent.parent
DATA = ROOT / "tests" / "data"


def _script() -> ModuleType:
    # as `python3 scripts/publish_results.py` has it: the modules beside it are importable
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
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
    assert _script().main([*args, "--sections", "broadcast,queues"]) == 2


def _stored_broadcast(results: Path) -> list[str]:
    """The repository's published broadcast capacity files, copied in as if measured before."""
    src = ROOT / "results" / "published" / "capacity"
    if not any(src.glob("*.json")):
        pytest.skip("no published broadcast results in this checkout")
    shutil.copytree(src, results / "published" / "capacity")
    return sorted(p.name for p in (results / "published" / "capacity").rglob("*.json"))


def test_tasks_and_rpc_sections_skip_a_design_that_does_not_carry_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    results, _ = _setup(tmp_path)
    kept = _stored_broadcast(results)
    script = _script()
    # redis is pub/sub only, so it is never picked for tasks or rpc; picked anyway (as a
    # target that declares more than it carries would be), its runs exit 2 and are skipped
    monkeypatch.setattr(script, "designs_here", lambda *_: ("inproc", "redis"))
    args = ["--results-dir", str(results), "--targets", "inproc,redis", "--sections",
            "tasks,rpc", "--duration", "0.5s", "--warmup", "0s", "--budget", "50s"]
    assert script.main(args) == 0
    published = results / "published"
    assert sorted(p.name for p in (published / "capacity").rglob("*.json")) == kept
    for pattern, single, unit in (("tasks", "fairness", "tasks"), ("rpc", "one-call", "rpc")):
        caps = list((published / pattern / "capacity").glob("*.json"))
        assert [p.name for p in caps] == ["inproc-64B.json"]  # redis left no search behind
        search = load_capacity(caps[0])
        assert search.steps and search.environment  # its steps left results the loader takes
        assert all("malformed" not in st.why for st in search.steps)
        assert len(list((published / pattern / single).glob("*.json"))) == 1
        skipped = (published / pattern / "skipped.txt").read_text()
        assert skipped.startswith("redis: ") and f"does not carry the {unit} pattern" in skipped
    runs = [load(p) for p in (published / "tasks" / "fairness").glob("*.json")]
    assert runs[0].config["slow_worker"] == "0:x10" and runs[0].config["work"] == "fixed:1ms"
    calls = [load(p) for p in (published / "rpc" / "one-call").glob("*.json")]
    assert calls[0].config["inflight"] == 1 and calls[0].latency_mode == "closed-loop"
    readme = (results / "README.md").read_text()
    for heading in ("## Capacity at 4 x 32, 64 B",  # the broadcast files kept, still shown
                    "## Task distribution: capacity at 2 producers x 4 workers",
                    "## Task distribution: one slow worker (2 x 4, 500/s per producer",
                    "## Request/reply: capacity at 8 requesters x 2 responders, open loop",
                    "## Request/reply: one call in flight (1 x 1, `--inflight 1`)"):
        assert heading in readme
        assert f"- [{heading[3:]}" in readme  # and in the contents
    assert readme.count("Not measured here: redis: ") == 2
    assert "| inproc | " in readme.split("one slow worker")[1]
    assert _script().main(["--results-dir", str(results), "--no-run"]) == 0
    again = (results / "README.md").read_text()  # from the stored files alone: the same
    assert again.split("Contents:")[1] == readme.split("Contents:")[1]


def _task_row() -> TaskRow:
    path = DATA / "tasks-result.json"
    return TaskRow.from_result(path, load(path))


def test_the_fairness_takeaway_is_computed_from_the_rows() -> None:
    balanced = _task_row()
    assert balanced.completion[1] is not None
    dealt = dataclasses.replace(balanced, jain=1.0, completion=(
        balanced.completion[0], balanced.completion[1] * 10, None, None))
    skewed = dataclasses.replace(balanced, jain=0.8)
    text = pattern_tables.fairness_takeaway(
        [("zmq mode=pipeline", dealt), ("redis-streams", skewed)])
    assert "lowest completion p99: **redis-streams**" in text
    assert "Most even shares: **zmq mode=pipeline** (Jain 1.000" in text
    assert "least even: **redis-streams** (Jain 0.800)" in text
    assert pattern_tables.fairness_takeaway([]).startswith("No design")


def test_the_one_call_takeaway_names_the_quickest_and_its_longest_leg() -> None:
    path = DATA / "rpc-result.json"
    ref = RpcRow.from_result(path, load(path))
    assert ref.round_trip[0] is not None
    quick = dataclasses.replace(ref, round_trip=(ref.round_trip[0] // 4, *ref.round_trip[1:]),
                                legs=(100, 200, 5_000, 6_000, 300, 400))
    text = pattern_tables.one_call_takeaway([("inproc", quick), ("redis-rpc", ref)])
    assert text.startswith("One call in flight, quickest round trip: **inproc**")
    assert "times quicker than redis-rpc" in text and "longest leg is the service" in text
    table = pattern_tables.one_call_lines([(path, load(path))])
    assert any(line.startswith("| redis-rpc |") for line in table[2].splitlines())

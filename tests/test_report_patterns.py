"""``report``, ``compare``, ``plot`` and the end-of-run table for task and rpc runs.

Two fixtures are real result files: ``tests/data/tasks-result.json`` (redis-streams,
2 producers x 4 workers, ``--work fixed:1ms``, ``--kill-worker 1s``: redelivered and
orphaned tasks), to which the fields newer files carry were added with synthesised values
(queue wait = completion - service, drawn from the file's own completion histogram; service
about 1.05 ms; per-second queue depths; idle-with-backlog seconds), and
``tests/data/rpc-result.json`` (redis-rpc, 3 requesters x 2 responders, open loop). Short
real runs (inproc, Redis) check the same figures against the files they write.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from matplotlib.patches import Rectangle
from test_report import make_result, run_inproc, write_results

from msgbench.analysis import pattern_plot, rpc_report, task_report
from msgbench.analysis.gate import METRICS, metrics_for
from msgbench.analysis.units import format_count, format_ns
from msgbench.cli.console import summary_table
from msgbench.cli.report_cmd import plot_paths
from msgbench.results.model import RunResult, SecondStats, load

DATA = Path(__file__).parent / "data"
TASKS = DATA / "tasks-result.json"
RPC = DATA / "rpc-result.json"
PNG_MAGIC = b"\x89PNG"
NEW_TASK_LEGS = ("task_queue_wait", "task_queue_wait_uncorrected", "task_service")


def _doc(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _csv(*files: Path | str) -> list[dict[str, str]]:
    r = run_inproc("report", "-f", "csv", *map(str, files))
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def _old_tasks_file(tmp_path: Path) -> Path:
    """The tasks fixture as files written before queue wait, service and idle time were."""
    d = _doc(TASKS)
    for key in NEW_TASK_LEGS:
        d["legs"].pop(key)
        d["histograms"].pop(key)
    for s in d["series"]:
        s.pop("queue_waiting")
        s.pop("queue_unacked")
    for g in d["groups"].values():
        g.pop("idle_with_backlog_s")
        g.pop("idle_with_backlog_total_s")
    out = tmp_path / "old-tasks.json"
    out.write_text(json.dumps(d))
    return out


# --- tasks ------------------------------------------------------------------------------


def test_task_csv_figures_are_the_files_own() -> None:
    d = _doc(TASKS)
    s, g = d["summary"], d["groups"]["g0"]
    [row] = _csv(TASKS)
    assert float(row["tasks_per_s"]) == pytest.approx(s["delivered_in_window"] / s["duration_s"])
    assert float(row["tasks_per_cpu_s"]) == pytest.approx(s["delivered_in_window"] / s["cpu_s"])
    assert int(row["submitted"]) == s["published"] == 6000
    assert int(row["completed"]) == s["delivered"]
    assert (int(row["lost"]), int(row["duplicated"])) == (s["lost"], s["duplicated"])
    assert (int(row["redelivered"]), int(row["orphaned"])) == (2, 2)
    assert float(row["jain"]) == g["jain"] and float(row["max_min"]) == g["max_min"]
    assert float(row["recovery_s"]) == g["recovery_s"]
    assert float(row["idle_with_backlog_s"]) == g["idle_with_backlog_total_s"]
    assert int(row["completion_p99_ns"]) == s["latency_ns"]["p99"]
    assert int(row["uncorrected_p50_ns"]) == s["latency_uncorrected_ns"]["p50"]
    assert int(row["queue_wait_p99_ns"]) == d["legs"]["task_queue_wait"]["p99"]
    assert (int(row["queue_wait_uncorrected_p99_ns"])
            == d["legs"]["task_queue_wait_uncorrected"]["p99"])
    assert int(row["service_p50_ns"]) == d["legs"]["task_service"]["p50"]
    assert [int(x) for x in row["shares"].split()] == g["shares"]
    assert [float(x) for x in row["member_idle_with_backlog_s"].split()] == g[
        "idle_with_backlog_s"]
    assert row["status"] == "degraded" and "kill-worker" in row["reasons"]


def test_task_text_tables_show_the_ledger_latency_and_members() -> None:
    d = _doc(TASKS)
    s = d["summary"]
    r = run_inproc("report", str(TASKS))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for header in ("tasks/s", "tasks/CPU-s", "submitted", "completed", "redeliv.", "orphaned",
                   "Jain", "max/min", "recovery", "idle/backlog", "queue wait p50 / p99",
                   "service p50 / p99", "held max", "idle w/ backlog", "busy"):
        assert header in out, header
    assert "deliveries/s" not in out and "pubs x subs" not in out  # not the fan-out table
    assert format_count(s["delivered_in_window"] / s["duration_s"]) in out
    qw = d["legs"]["task_queue_wait"]
    assert f"{format_ns(qw['p50'])} / {format_ns(qw['p99'])}" in out
    members = out[out.index("task workers"):]
    # one line per member, with its share of the group's tasks and its utilisation
    shares = d["groups"]["g0"]["shares"]
    for share, busy in zip(shares, d["groups"]["g0"]["utilisation"], strict=True):
        assert re.search(rf"{share:,}\s+{share / sum(shares):.1%}\s+{busy:.0%}", members)
    assert "0.37 s" in out and "2.80 s" in out  # recovery, idle while tasks waited


def test_an_older_task_file_prints_dashes_not_zeros(tmp_path: Path) -> None:
    old = _old_tasks_file(tmp_path)
    [row] = _csv(old)
    for key in ("queue_wait_p50_ns", "service_p99_ns", "idle_with_backlog_s",
                "member_idle_with_backlog_s"):
        assert row[key] == "", key
    assert row["completion_p99_ns"] != ""
    r = run_inproc("report", "-f", "md", str(old))
    latency = next(line for line in r.stdout.splitlines()
                   if line.startswith("| redis-streams") and " ms / " in line)
    cells = [c.strip() for c in latency.strip("|").split("|")]
    assert cells[5:7] == ["-", "-"]  # queue wait, service


def test_mixed_patterns_get_their_own_tables_and_csv_refuses_them(tmp_path: Path) -> None:
    [bcast] = write_results(tmp_path, [make_result()])
    r = run_inproc("report", str(bcast), str(TASKS), str(RPC))
    assert r.returncode == 0, r.stderr
    titles = [line for line in r.stdout.splitlines() if line.startswith("msgbench results")]
    assert titles == ["msgbench results", "msgbench results: tasks",
                      "msgbench results: task latency (completion from the intended submit) "
                      "and the first limit", "msgbench results: task workers",
                      "msgbench results: request/reply",
                      "msgbench results: round trip (from the intended send) and its legs",
                      "msgbench results: responders"]
    head = r.stdout[: r.stdout.index("msgbench results: tasks")]
    assert head.count("inproc") == 1 and "redis-streams" not in head  # one row: the fan-out
    c = run_inproc("report", "-f", "csv", str(bcast), str(TASKS))
    assert c.returncode == 2
    assert c.stderr.strip().splitlines() == [
        "msgbench: error: -f csv takes runs of one pattern (one header each), these are "
        "broadcast (1 file), tasks (1 file): report them apart"]


def test_html_page_has_each_patterns_tables_and_plot(tmp_path: Path) -> None:
    [bcast] = write_results(tmp_path, [make_result()])
    out = tmp_path / "r.html"
    r = run_inproc("report", "-f", "html", "-o", str(out), str(bcast), str(TASKS), str(RPC))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    for title in ("tasks", "task workers", "request/reply", "responders"):
        assert f"<h2>{title}</h2>" in page
    assert page.count('src="data:image/png;base64,') == 3
    assert '<tr class="degraded">' in page  # the killed worker's run is marked


# --- rpc --------------------------------------------------------------------------------


def test_rpc_csv_figures_are_the_files_own() -> None:
    d = _doc(RPC)
    s, legs = d["summary"], d["legs"]
    [row] = _csv(RPC)
    assert float(row["requests_per_s"]) == pytest.approx(
        s["delivered_in_window"] / s["duration_s"])
    assert (int(row["sent"]), int(row["matched"])) == (s["published"], s["delivered"])
    for key in ("timeouts", "late", "orphan_replies", "misrouted", "duplicated"):
        assert int(row[key]) == s[key], key
    assert int(row["round_trip_p999_ns"]) == s["latency_ns"]["p999"]
    assert int(row["from_actual_p99_ns"]) == s["latency_uncorrected_ns"]["p99"]
    for leg in rpc_report.LEGS:
        short = leg.removeprefix("rpc_")
        assert int(row[f"{short}_p50_ns"]) == legs[leg]["p50"]
        assert int(row[f"{short}_p99_ns"]) == legs[leg]["p99"]
    answered = [x["answered"] for x in d["subscribers"] if x.get("role") == "responder"]
    assert [int(x) for x in row["responder_answered"].split()] == answered
    assert row["latency_mode"] == "open-loop"


def test_rpc_text_tables_show_the_legs_and_responder_shares() -> None:
    d = _doc(RPC)
    r = run_inproc("report", str(RPC))
    assert r.returncode == 0, r.stderr
    for header in ("requests/s", "matched", "timeouts", "late", "orphan", "misrouted",
                   "round trip p50 / p99 / p99.9 / max", "request leg p50 / p99",
                   "service p50 / p99", "reply leg p50 / p99", "answered", "share"):
        assert header in r.stdout, header
    assert "open loop" in r.stdout
    leg = d["legs"]["rpc_reply_leg"]
    assert f"{format_ns(leg['p50'])} / {format_ns(leg['p99'])}" in r.stdout
    answered = [x["answered"] for x in d["subscribers"] if x.get("role") == "responder"]
    for a in answered:
        assert re.search(rf"{a:,}\s+{a / sum(answered):.1%}", r.stdout)


# --- compare ----------------------------------------------------------------------------


def _as(pattern: str, runs: list[RunResult]) -> list[RunResult]:
    return [replace(r, config={**r.config, "pattern": pattern}) for r in runs]


@pytest.mark.parametrize(("pattern", "names"), [
    ("tasks", ("CPU-ns/task", "tasks/s", "completion p99")),
    ("rpc", ("CPU-ns/request", "requests/s", "round trip p99")),
])
def test_compare_names_each_patterns_headline_figures(tmp_path: Path, pattern: str,
                                                      names: tuple[str, ...]) -> None:
    base = _as(pattern, [make_result(seed=i, seconds=1) for i in range(8)])
    new = _as(pattern, [make_result(seed=50 + i, seconds=1, msgs_per_cpu_s=0.7e6)
                        for i in range(8)])
    write_results(tmp_path / "b", base)
    write_results(tmp_path / "n", new)
    r = run_inproc("compare", str(tmp_path / "b"), str(tmp_path / "n"),
                   "--max-p99-increase", "50")
    assert r.returncode == 1, r.stdout + r.stderr  # 43 % more CPU per task / request
    for name in names:
        assert name in r.stdout
    assert "deliveries/s" not in r.stdout and "CPU-ns/msg" not in r.stdout


def test_broadcast_metrics_keep_their_names() -> None:
    assert [m.name for m in METRICS] == ["CPU-ns/msg", "deliveries/s", "p50", "p99", "p99.9"]
    assert metrics_for("tasks")[3].limit == "p99" and metrics_for("rpc")[0].limit == "throughput"


def test_compare_refuses_a_task_run_against_a_broadcast_run(tmp_path: Path) -> None:
    write_results(tmp_path / "b", [make_result(seed=i) for i in range(3)])
    (tmp_path / "n").mkdir()
    shutil.copy(TASKS, tmp_path / "n")
    r = run_inproc("compare", str(tmp_path / "b"), str(tmp_path / "n"))
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()
    assert "BASE is broadcast, NEW is tasks" in line


def test_task_workloads_differ_by_their_work(tmp_path: Path) -> None:
    base = _as("tasks", [make_result(seed=i) for i in range(3)])
    new = [replace(r, config={**r.config, "work": "fixed:1ms"}) for r in base]
    write_results(tmp_path / "b", base)
    write_results(tmp_path / "n", new)
    r = run_inproc("compare", str(tmp_path / "b"), str(tmp_path / "n"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "msgbench: error: BASE and NEW ran different workloads: work None vs 'fixed:1ms'"]


# --- plot -------------------------------------------------------------------------------


def test_task_plot_has_series_members_and_latency_panels(tmp_path: Path) -> None:
    tasks = load(TASKS)
    fig = pattern_plot.figure("tasks", [(str(TASKS), tasks)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["Task completion by percentile", "Tasks completed per second"]
    assert "Shares and utilisation" in titles and "Queue wait, service, completion" in titles
    latency = fig.axes[titles.index("Queue wait, service, completion")]
    assert [ln.get_label() for ln in latency.get_lines()] == [
        "queue wait", "service", "completion", "completion, uncorrected"]
    bars = [p for p in fig.axes[titles.index("Shares and utilisation")].patches
            if isinstance(p, Rectangle)]
    shares = tasks.groups["g0"]["shares"]
    assert [round(b.get_height(), 6) for b in bars[:4]] == [
        round(x / sum(shares), 6) for x in shares]
    series = pattern_plot.task_series(tasks)
    assert series["submitted"] == [float(s.published) for s in tasks.series]
    assert series["backlog"] == [float(s.backlog) for s in tasks.series]
    old = pattern_plot.figure("tasks", [("old", load(_old_tasks_file(tmp_path)))])
    old_latency = [ax for ax in old.axes if ax.get_title() == "Queue wait, service, completion"]
    assert [ln.get_label() for ln in old_latency[0].get_lines()] == [
        "completion", "completion, uncorrected"]


@pytest.mark.skipif("queue_waiting" not in {f.name for f in fields(SecondStats)},
                    reason="the results model does not carry per-second queue depths yet")
def test_task_plot_draws_queue_depths_when_the_file_has_them() -> None:
    series = pattern_plot.task_series(load(TASKS))
    raw = _doc(TASKS)["series"]
    assert series["queue: waiting"] == [float(s["queue_waiting"]) for s in raw]
    assert series["queue: unacked"] == [float(s["queue_unacked"]) for s in raw]


def test_rpc_plot_has_round_trip_and_legs() -> None:
    fig = pattern_plot.figure("rpc", [(str(RPC), load(RPC))])
    by_title = {ax.get_title(): ax for ax in fig.axes}
    legs = by_title["Legs of the round trip"]
    assert [ln.get_label() for ln in legs.get_lines()] == ["request leg", "service", "reply leg"]
    trip = next(ax for t, ax in by_title.items() if t.endswith("round trip (open loop)"))
    assert [ln.get_label() for ln in trip.get_lines()] == ["from intended send",
                                                          "from actual send"]


def test_plot_command_writes_one_png_per_pattern(tmp_path: Path) -> None:
    [bcast] = write_results(tmp_path, [make_result()])
    out = tmp_path / "p.png"
    r = run_inproc("plot", "-o", str(out), str(bcast), str(TASKS), str(RPC))
    assert r.returncode == 0, r.stderr
    written = [tmp_path / "p.png", tmp_path / "p-tasks.png", tmp_path / "p-rpc.png"]
    assert r.stderr.split() == [str(p) for p in written]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written)
    only = tmp_path / "t.png"
    assert run_inproc("plot", "-o", str(only), str(TASKS)).returncode == 0
    assert only.read_bytes().startswith(PNG_MAGIC)
    assert plot_paths(["tasks", "rpc"], Path("x/y.png")) == {
        "tasks": Path("x/y.png"), "rpc": Path("x/y-rpc.png")}


# --- console ----------------------------------------------------------------------------


def _table_text(result: RunResult) -> str:
    from rich.console import Console

    console = Console(width=160, record=True, file=io.StringIO())
    console.print(summary_table(result, None))
    return console.export_text()


def test_console_table_of_a_task_run() -> None:
    text = _table_text(load(TASKS))
    for words in ("submitted / completed (unique)", "6,000 / 6,000",
                  "lost / duplicated / redelivered / orphaned", "0 / 0 / 2 / 2", "tasks/s",
                  "completion (from intended submit)", "queue wait (submit -> worker)",
                  "service (worker's time)", "most held at once 7/10/10/10",
                  "idle while tasks waited 2.80 s", "tasks per CPU-second"):
        assert words in text, words
    assert "deliveries/s" not in text


def test_console_table_of_an_rpc_run() -> None:
    text = _table_text(load(RPC))
    for words in ("requests sent / replies matched", "timeouts / late / orphan",
                  "misrouted / duplicated", "round trip (from intended send)",
                  "from actual send", "request leg", "reply leg",
                  "answered per responder", "requests per CPU-second"):
        assert words in text, words


# --- real runs --------------------------------------------------------------------------

SHORT = ("--duration", "1s", "--warmup", "300ms")


def _one_result(run: Any) -> tuple[Path, dict[str, Any]]:
    assert run.returncode == 0, run.stderr
    [path] = run.result_files()
    return path, run.result()


def test_real_inproc_task_run_reports_its_own_figures(run_cli: Any) -> None:
    run = run_cli("run", "--pattern", "tasks", "-t", "inproc", "--pubs", "2", "--subs", "3",
                  "--rate", "1k", "--work", "exp:100us", *SHORT)
    path, d = _one_result(run)
    assert "tasks/s" in run.stdout and "completion (from intended submit)" in run.stdout
    [row] = _csv(path)
    s = d["summary"]
    assert float(row["tasks_per_s"]) == pytest.approx(s["delivered_in_window"] / s["duration_s"])
    assert int(row["completed"]) == s["delivered"] == s["published"] == 2000
    assert sum(int(x) for x in row["shares"].split()) == s["delivered"]
    assert len(row["utilisation"].split()) == 3
    if d["legs"].get("task_service"):  # files from a driver that records service time
        assert int(row["service_p50_ns"]) == d["legs"]["task_service"]["p50"]


def test_real_inproc_closed_loop_rpc_run_is_labelled_so(run_cli: Any) -> None:
    run = run_cli("run", "--pattern", "rpc", "-t", "inproc", "--inflight", "2", *SHORT)
    path, d = _one_result(run)
    assert "round trip (closed loop, --inflight 2)" in run.stdout
    [row] = _csv(path)
    assert row["latency_mode"] == d["latency_mode"] == "closed-loop"
    assert int(row["matched"]) == d["summary"]["delivered"]
    text = run_inproc("report", str(path)).stdout
    assert "closed, inflight 2" in text


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_real_redis_rpc_run_has_legs_that_fit_in_the_round_trip(run_cli: Any) -> None:
    run = run_cli("run", "--pattern", "rpc", "-t", "redis-rpc", "--pubs", "2", "--subs", "2",
                  "--rate", "500", *SHORT)
    path, d = _one_result(run)
    [row] = _csv(path)
    assert int(row["matched"]) == d["summary"]["delivered"] == 1000
    assert int(row["timeouts"]) == 0
    # the legs are measured on one clock: their medians cannot exceed the round trip's max
    legs = sum(int(row[f"{leg.removeprefix('rpc_')}_p50_ns"]) for leg in rpc_report.LEGS)
    assert 0 < legs <= int(row["round_trip_max_ns"])
    assert not math.isnan(float(row["requests_per_cpu_s"]))


def test_task_row_max_min_of_a_member_that_did_nothing_is_infinite() -> None:
    r = load(TASKS)
    g = {**r.groups["g0"], "max_min": None}
    row = task_report.TaskRow.from_result("x", replace(r, groups={"g0": g}))
    assert row.max_min == math.inf


def test_export_writes_a_leg_and_refuses_a_histogram_the_file_lacks(tmp_path: Path) -> None:
    out = tmp_path / "leg.hgrm"
    r = run_inproc("export", str(RPC), "--hgrm", str(out), "--histogram", "rpc_service",
                   "--unit", "ns")
    assert r.returncode == 0, r.stderr
    m = re.search(r"Total count\s*=\s*(\d+)", out.read_text())
    assert m and int(m.group(1)) == _doc(RPC)["legs"]["rpc_service"]["count"]
    bad = run_inproc("export", str(RPC), "--hgrm", str(out), "--histogram", "task_service")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "no task_service" in bad.stderr

"""``msgbench sweep``: matrix expansion, workload files, and a real sweep with a failing cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import CliRun
from msgbench.orchestration.sweep import Cell, WorkloadError, expand, read_workload
from msgbench.results.model import load
from msgbench.workload.config import DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_PROBE_TIMEOUT_S


def test_matrix_expands_in_order_and_trials_interleave() -> None:
    cells = expand({"target": ["inproc", "zmq --zmq-mode proxy"], "subs": ["1", 8],
                    "rate": ["20k"], "trials": 2, "duration": "1s"})
    assert len(cells) == 8
    assert [(c.target_name, c.subs, c.trial) for c in cells[:4]] == [
        ("inproc", 1, 0), ("inproc", 8, 0), ("zmq", 1, 0), ("zmq", 8, 0)]
    assert cells[4].trial == 1
    args = cells[2].run_args()
    assert args[:4] == ["--target", "zmq", "--zmq-mode", "proxy"]
    assert args[args.index("--rate") + 1] == "20k" and args[args.index("--duration") + 1] == "1s"


@pytest.mark.parametrize("spec", [{"subs": ["many"]}, {"subs": []}, {"trials": 0},
                                  {"duration": "soon"}])
def test_bad_matrix_values_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(WorkloadError):
        expand(spec)


def test_workload_files_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "w.toml"
    toml.write_text('target = "inproc"\nsubs = [1, 4]\nrate = ["10k"]\nduration = "2s"\n'
                    'args = ["--drain-timeout", "1s"]\n')
    yaml = tmp_path / "w.yaml"
    yaml.write_text("subs: [2, 3]\nsize: 128\nwarmup: 100ms\n")
    a = expand(read_workload(toml))
    assert [c.subs for c in a] == [1, 4] and a[0].args == ("--drain-timeout", "1s")
    assert a[0].duration == "2s"
    b = expand(read_workload(yaml))
    assert [(c.subs, c.size, c.warmup) for c in b] == [(2, 128, "100ms"), (3, 128, "100ms")]
    bad = tmp_path / "bad.toml"
    bad.write_text("sub = [1]\n")
    with pytest.raises(WorkloadError, match="unknown key"):
        read_workload(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("subs: [1,\n")
    with pytest.raises(WorkloadError, match=r"broken\.yaml"):
        read_workload(broken)


def test_cell_timeout_covers_the_run() -> None:
    c = Cell("inproc", 1, 1, 64, "max", 1, "10s", "2s")
    assert c.timeout_s() > 12


def test_cell_timeout_follows_the_timeouts_given_in_args() -> None:
    base = Cell("inproc", 1, 1, 64, "max", 1, "10s", "2s").timeout_s()
    longer = Cell("inproc", 1, 1, 64, "max", 1, "10s", "2s",
                  ("--probe-timeout", "5m", "--drain-timeout=100s")).timeout_s()
    assert longer == base - DEFAULT_PROBE_TIMEOUT_S - DEFAULT_DRAIN_TIMEOUT_S + 300 + 100
    unparsed = Cell("inproc", 1, 1, 64, "max", 1, "10s", "2s", ("--probe-timeout", "soon"))
    assert unparsed.timeout_s() == base  # the run itself will say what is wrong


def test_sweep_runs_every_cell_and_records_a_failing_one(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    r: CliRun = run_cli("sweep", "--target", "inproc,nosuch", "--subs", "1,2", "--rate", "5k",
                        "-d", "300ms", "-w", "100ms", "--out", str(out), "--drain-timeout", "1s")
    assert r.returncode == 1, r.stderr
    files = sorted(out.glob("*.json"))
    assert len(files) == 2
    assert {load(f).config["subs"] for f in files} == {1, 2}
    assert load(files[0]).config["drain_timeout_s"] == 1.0
    lines = r.stdout.splitlines()
    assert sum("inproc" in ln and " ok" in ln for ln in lines) == 2
    assert sum("nosuch" in ln and "error: unknown target" in ln for ln in lines) == 2
    assert "2 of 4 cells failed" in r.stderr
    bad = run_cli("sweep", "--subs", "1,x", "--out", str(out))
    assert bad.returncode == 2 and "not a whole number" in bad.stderr

"""``msgbench compare`` on synthetic result files, and ``msgbench ci`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report import make_result, run_inproc, write_results

from conftest import CliRun
from msgbench.results.model import RunResult, load

TRIALS = 5
NOISE_CV = 0.02


def _trials(shift: float = 0.0, seed: int = 0, **kw: object) -> list[RunResult]:
    rng = np.random.default_rng(seed)
    return [
        make_result(msgs_per_cpu_s=float(rng.normal(1e6 * (1 - shift), 1e6 * NOISE_CV)),
                    seed=seed * 100 + i, seconds=1, **kw)  # type: ignore[arg-type]
        for i in range(TRIALS)
    ]


def _dirs(tmp_path: Path, base: list[RunResult], new: list[RunResult]) -> tuple[str, str]:
    write_results(tmp_path / "base", base)
    write_results(tmp_path / "new", new)
    return str(tmp_path / "base"), str(tmp_path / "new")


def test_a_a_passes_and_prints_the_evidence(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=1), _trials(seed=2))
    r = run_inproc("compare", b, n)
    assert r.returncode == 0, r.stdout + r.stderr
    for word in ("msgs/CPU-s", "p50", "BASE median", "NEW/BASE", "CI", "p(worse)", "PASS"):
        assert word in r.stdout


def test_ten_percent_slowdown_in_msgs_per_cpu_second_is_a_regression(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=3), _trials(0.10, seed=4))
    r = run_inproc("compare", b, n)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REGRESSION" in r.stdout and "msgs/CPU-s" in r.stdout.split("REGRESSION")[-1]
    # globs work, and a looser limit lets the same data pass
    r = run_inproc("compare", f"{b}/*.json", f"{n}/r0*.json", "--max-slowdown", "20")
    assert r.returncode == 0, r.stdout


def test_p50_at_a_fixed_rate_is_gated_but_not_in_closed_loop(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path / "fixed", _trials(seed=5), _trials(seed=6, p50_us=150.0))
    r = run_inproc("compare", b, n)
    assert r.returncode == 1 and "p50" in r.stdout.split("REGRESSION")[-1]
    b, n = _dirs(tmp_path / "closed", _trials(seed=5, rate=None),
                 _trials(seed=6, rate=None, p50_us=150.0))
    assert run_inproc("compare", b, n).returncode == 0


@pytest.mark.parametrize("problem", ["lost", "failed"])
def test_a_degraded_baseline_is_never_used_silently(tmp_path: Path, problem: str) -> None:
    base = _trials(seed=7)
    bad = (make_result(lost=5, status="degraded", reasons=("5 lost",), seconds=1)
           if problem == "lost" else
           make_result(status="failed", reasons=("worker 1 died",), seconds=1))
    b, n = _dirs(tmp_path, [*base, bad], _trials(seed=8))
    r = run_inproc("compare", b, n)
    assert r.returncode == 2
    assert "r05.json" in r.stderr and "--allow-degraded-baseline" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_inproc("compare", b, n, "--allow-degraded-baseline")
    assert r.returncode in (0, 1) and "warning: baseline" in r.stderr and "r05.json" in r.stderr


def test_a_failed_or_lossy_candidate_is_a_regression(tmp_path: Path) -> None:
    new = [*_trials(seed=10), make_result(status="failed", reasons=("server died",), seconds=1)]
    b, n = _dirs(tmp_path, _trials(seed=9), new)
    r = run_inproc("compare", b, n)
    assert r.returncode == 1 and "server died" in r.stdout


def test_different_workloads_are_refused(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=1, subs=4), _trials(seed=2, subs=8))
    r = run_inproc("compare", b, n)
    assert r.returncode == 2 and "subs 4 vs 8" in r.stderr
    b, n = _dirs(tmp_path / "opt", _trials(seed=1, target="zmq"),
                 _trials(seed=2, target="zmq", options={"zmq_mode": "proxy"}))
    r = run_inproc("compare", b, n)
    assert r.returncode == 2 and "target_options" in r.stderr


def test_bad_files_and_too_few_trials_exit_2(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=1), _trials(seed=2))
    doc = json.loads(Path(n, "r00.json").read_text())
    doc["schema_version"] = 0
    Path(n, "r00.json").write_text(json.dumps(doc))
    r = run_inproc("compare", b, n)
    assert r.returncode == 2 and "schema version 0" in r.stderr
    Path(n, "r00.json").write_text("{truncated")
    r = run_inproc("compare", b, n)
    assert r.returncode == 2 and "r00.json" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_inproc("compare", f"{b}/r00.json", f"{b}/r01.json")
    assert r.returncode == 2 and "at least 4 trials" in r.stderr
    r = run_inproc("compare", b, b, "--max-slowdown", "fast")
    assert r.returncode == 2


def test_ci_needs_exactly_one_baseline(tmp_path: Path) -> None:
    assert run_inproc("ci").returncode == 2
    r = run_inproc("ci", "--baseline", str(tmp_path), "--baseline-rev", "HEAD")
    assert r.returncode == 2 and "exactly one" in r.stderr
    r = run_inproc("ci", "--baseline-rev", "no-such-revision-xyz", "--out", str(tmp_path))
    assert r.returncode == 2 and "no-such-revision-xyz" in r.stderr


CI_SUITE = 'target = "inproc"\nsubs = [2]\nrate = ["5k"]\n'
CI_TRIALS = "4"
INJECTED_COST_NS = "30000"
"""About twice the CPU a delivery costs at this rate: a slowdown no noise can hide."""


def test_ci_against_another_revision_catches_an_injected_slowdown(run_cli: Any,
                                                                  tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(CI_SUITE)
    out = tmp_path / "ci"
    r: CliRun = run_cli("ci", "--baseline-rev", "HEAD", "--suite", str(suite), "--trials",
                        CI_TRIALS, "-d", "300ms", "-w", "50ms", "--out", str(out),
                        "--candidate-env", f"MSGBENCH_INJECT_COST_NS={INJECTED_COST_NS}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REGRESSION" in r.stdout and "msgs/CPU-s" in r.stdout.split("REGRESSION")[-1]
    assert "p(worse)" in r.stdout
    base, new = sorted((out / "base").glob("*.json")), sorted((out / "new").glob("*.json"))
    assert len(base) == len(new) == int(CI_TRIALS)
    # the baseline ran from the installed copy of HEAD (not a git checkout), without the
    # injected cost; the candidate from this checkout, with it
    assert all(load(p).environment["git"]["revision"] is None for p in base)
    assert all(load(p).environment.get("injected_cost_ns", 0) == 0 for p in base)
    assert all(load(p).environment["injected_cost_ns"] == int(INJECTED_COST_NS) for p in new)

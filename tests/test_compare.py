"""``msgbench compare`` on synthetic result files, and ``msgbench ci`` end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report import make_result, run_inproc, write_results

from conftest import CliRun
from msgbench.results.model import RunResult, load

TRIALS = 8
NOISE_CV = 0.02
BLOCKS = 10


def _trials(shift: float = 0.0, seed: int = 0, **kw: object) -> list[RunResult]:
    rng = np.random.default_rng(seed)
    return [
        make_result(msgs_per_cpu_s=float(rng.normal(1e6 * (1 - shift), 1e6 * NOISE_CV)),
                    seed=seed * 100 + i, seconds=1, **kw)  # type: ignore[arg-type]
        for i in range(TRIALS)
    ]


def _blocks(seed: int, shift: float = 0.0) -> list[RunResult]:
    """Runs whose CPU-ns per message is (1 + shift) x a shared drift x 1 % noise."""
    rng = np.random.default_rng(seed)
    drift = np.linspace(1.0, 1.5, BLOCKS)  # the machine slows down; pairs cancel it
    return [make_result(msgs_per_cpu_s=float(1e6 / (d * (1 + shift) * rng.lognormal(0, 0.01))),
                        seed=seed * 100 + i, seconds=1) for i, d in enumerate(drift)]


def _dirs(tmp_path: Path, base: list[RunResult], new: list[RunResult]) -> tuple[str, str]:
    write_results(tmp_path / "base", base)
    write_results(tmp_path / "new", new)
    return str(tmp_path / "base"), str(tmp_path / "new")


def test_a_a_passes_and_prints_the_evidence(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=1), _trials(seed=2))
    r = run_inproc("compare", b, n)
    assert r.returncode == 0, r.stdout + r.stderr
    for word in ("CPU-ns/msg", "p50", "BASE median", "change", "p(worse)", "p(within)",
                 "unpaired"):
        assert word in r.stdout
    assert "PASS" in r.stdout or "INCONCLUSIVE" in r.stdout


def test_twenty_percent_slowdown_in_cpu_per_message_is_a_regression(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path, _trials(seed=3), _trials(1 - 1 / 1.2, seed=4))
    r = run_inproc("compare", b, n)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REGRESSION" in r.stdout and "CPU-ns/msg" in r.stdout.split("REGRESSION")[-1]
    # globs work, and a looser limit lets the same data through
    r = run_inproc("compare", f"{b}/*.json", f"{n}/r*.json", "--max-slowdown", "80")
    assert r.returncode == 0, r.stdout


def _interleaved(base: list[RunResult], new: list[RunResult]) -> tuple[list[RunResult],
                                                                      list[RunResult]]:
    t0 = datetime(2026, 12, 2, tzinfo=UTC)
    stamp = [(t0 + timedelta(seconds=k)).isoformat() for k in range(2 * len(base))]
    # block i: base first when i is even; the start times show the pairs
    return ([replace(r, started_at=stamp[2 * i + i % 2]) for i, r in enumerate(base)],
            [replace(r, started_at=stamp[2 * i + 1 - i % 2]) for i, r in enumerate(new)])


def test_interleaved_runs_are_paired_by_position(tmp_path: Path) -> None:
    base, new = _interleaved(_blocks(seed=5), _blocks(seed=6, shift=0.15))
    b, n = _dirs(tmp_path, base, new)
    r = run_inproc("compare", b, n)
    assert r.returncode == 1, r.stdout
    assert "unpaired" not in r.stdout and "REGRESSION" in r.stdout


def test_p50_is_gated_only_when_asked_and_never_in_closed_loop(tmp_path: Path) -> None:
    b, n = _dirs(tmp_path / "fixed", _trials(seed=5), _trials(seed=6, p50_us=150.0))
    r = run_inproc("compare", b, n)
    assert r.returncode == 0, r.stdout
    r = run_inproc("compare", b, n, "--max-p50-increase", "15")
    assert r.returncode == 1 and "p50" in r.stdout.split("REGRESSION")[-1]
    b, n = _dirs(tmp_path / "closed", _trials(seed=5, rate=None),
                 _trials(seed=6, rate=None, p50_us=150.0))
    assert run_inproc("compare", b, n, "--max-p50-increase", "15").returncode == 0


@pytest.mark.parametrize("field", ["hostname", "cpu_model"])
def test_different_hosts_or_cpus_are_refused_unless_allowed(tmp_path: Path, field: str) -> None:
    new = [replace(r, environment={**r.environment, field: "elsewhere"}) for r in _trials(seed=2)]
    b, n = _dirs(tmp_path, _trials(seed=1), new)
    r = run_inproc("compare", b, n)
    assert r.returncode == 2 and "--allow-mixed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_inproc("compare", b, n, "--allow-mixed")
    assert r.returncode in (0, 1) and "warning: runs of different" in r.stderr


def test_different_patterns_are_refused_even_when_mixing_is_allowed(tmp_path: Path) -> None:
    new = [replace(r, config={**r.config, "pattern": "tasks"}) for r in _trials(seed=2)]
    b, n = _dirs(tmp_path, _trials(seed=1), new)
    for extra in ((), ("--allow-mixed",)):
        r = run_inproc("compare", b, n, *extra)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            "msgbench: error: runs of different patterns: BASE is broadcast, NEW is tasks; a "
            "delivery, a task and a reply are not the same unit, compare runs of one pattern"]


@pytest.mark.parametrize("problem", ["lost", "failed"])
def test_a_degraded_baseline_is_never_used_silently(tmp_path: Path, problem: str) -> None:
    base = _trials(seed=7)
    bad = (make_result(lost=5, status="degraded", reasons=("5 lost",), seconds=1)
           if problem == "lost" else
           make_result(status="failed", reasons=("worker 1 died",), seconds=1))
    b, n = _dirs(tmp_path, [*base, bad], _trials(seed=8))
    r = run_inproc("compare", b, n)
    assert r.returncode == 2
    assert f"r{TRIALS:02d}.json" in r.stderr and "--allow-degraded-baseline" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_inproc("compare", b, n, "--allow-degraded-baseline")
    assert r.returncode in (0, 1) and "warning: baseline" in r.stderr
    assert f"r{TRIALS:02d}.json" in r.stderr


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
    assert r.returncode == 2 and "can never be significant" in r.stderr
    r = run_inproc("compare", b, b, "--max-slowdown", "fast")
    assert r.returncode == 2


def test_ci_needs_a_baseline_revision_and_good_options(tmp_path: Path) -> None:
    assert run_inproc("ci").returncode == 2
    r = run_inproc("ci", "--baseline-rev", "no-such-revision-xyz", "--out", str(tmp_path))
    assert r.returncode == 2 and "no-such-revision-xyz" in r.stderr
    for bad in (["--looks", "1"], ["--looks", "ten"], ["--candidate-slowdown", "0"],
                ["--candidate-slowdown", "fast"], ["--alpha", "2"], ["--max-redo", "-1"]):
        r = run_inproc("ci", "--baseline-rev", "HEAD", "--out", str(tmp_path), *bad)
        assert r.returncode == 2, bad
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


E2E_BLOCKS = "7"
"""The fewest blocks whose sign-flip test can reach p < 0.01 (1/128): about 35 s of runs."""
E2E_ARGS = ("--looks", E2E_BLOCKS, "--max-redo", "0", "-d", "300ms", "-w", "50ms",
            "--seed", "1")


def _blocks_of(out: Path) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = json.loads((out / "ci.json").read_text())["blocks"]
    return blocks


@pytest.mark.serial
def test_ci_a_a_against_another_revision_never_raises_an_alarm(run_cli: Any,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "ci"
    r: CliRun = run_cli("ci", "--baseline-rev", "HEAD", "--out", str(out), *E2E_ARGS)
    # exact at alpha 0.01 whatever the machine does: a false alarm here is a 1 % event
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout or "INCONCLUSIVE" in r.stdout
    base, new = sorted((out / "base").glob("*.json")), sorted((out / "new").glob("*.json"))
    assert len(base) == len(new) == int(E2E_BLOCKS)
    # the baseline ran from the installed copy of HEAD (not a git checkout)
    assert all(load(p).environment["git"]["revision"] is None for p in base)
    assert {b["first"] for b in _blocks_of(out)} == {"base", "new"}  # seed 1 flips both ways


E2E_SLOWDOWN = "300%"
"""A slowdown this run cannot miss: a log ratio of 1.39, four times the widest block-to-block
spread seen on this shared machine (0.35), so each of the 7 blocks comes out slower. How small
a slowdown the gate resolves is the statistics' business, proved on simulated blocks with known
effects in test_gate.py; this test proves the pipeline end to end: calibration, injected work
in the candidate only, paired blocks, the verdict and its exit code."""


@pytest.mark.serial
def test_ci_catches_an_injected_slowdown(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "ci"
    r: CliRun = run_cli("ci", "--baseline-rev", "HEAD", "--out", str(out), *E2E_ARGS,
                        "--alpha", "0.05", "--candidate-slowdown", E2E_SLOWDOWN)
    new = sorted((out / "new").glob("*.json"))
    assert all(load(p).environment["injected_work"] > 0 for p in new)
    assert all(load(p).environment.get("injected_work", 0) == 0
               for p in sorted((out / "base").glob("*.json")))
    d = [np.log(b["new"]["cpu_ns_per_msg"] / b["base"]["cpu_ns_per_msg"])
         for b in _blocks_of(out)]
    assert min(d) > 0, f"a block where the 4x candidate was not slower: {d}"
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REGRESSION" in r.stdout and "CPU-ns/msg" in r.stdout.split("REGRESSION")[-1]

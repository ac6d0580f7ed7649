"""Shared fixtures: run the real ``msgbench`` command and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RUN_TIMEOUT_S = 120
STRICT = bool(os.environ.get("CI"))
"""CI set (as ``.ci/run`` and CI services set it): nothing is optional. A test that would skip
for a missing server, browser or tool fails instead, so a CI that forgot an install cannot
pass; on a developer's machine such a test still skips, saying what to install."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """Under CI, turn every skip into a failure that says why it would have skipped."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI is set, so nothing is optional and nothing skips: {reason}"


@dataclass(frozen=True)
class CliRun:
    """What one ``msgbench`` invocation produced."""

    returncode: int
    stdout: str
    stderr: str
    out_dir: Path

    def result_files(self) -> list[Path]:
        """Result documents written to the run's ``--out`` directory."""
        return sorted(self.out_dir.glob("*.json"))

    def result(self) -> dict[str, Any]:
        """The single result document written by the run."""
        files = self.result_files()
        assert len(files) == 1, f"expected one result file, found {files}"
        data: dict[str, Any] = json.loads(files[0].read_text())
        return data


def msgbench_argv(*args: str) -> list[str]:
    """argv that runs this checkout's msgbench with the current interpreter."""
    return [sys.executable, "-m", "msgbench", *args]


@pytest.fixture
def run_cli(tmp_path: Path) -> Any:
    """Call as ``run_cli("run", "--subs", "2", ...)``; ``--out`` points into tmp_path."""

    def _run(*args: str, timeout: float = RUN_TIMEOUT_S) -> CliRun:
        out = tmp_path / "results"
        argv = list(args)
        if argv and argv[0] == "run" and "--out" not in argv:
            argv += ["--out", str(out)]
        proc = subprocess.run(
            msgbench_argv(*argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        return CliRun(proc.returncode, proc.stdout, proc.stderr, out)

    return _run


@pytest.fixture(scope="session")
def rabbit_broker() -> Any:
    """One private RabbitMQ node for every test that runs against a broker it did not start
    (each takes seconds to start; the private-broker path has tests of its own)."""
    from msgbench.kit.amqp_server import check_installed, private_broker

    if check_installed() is not None:
        pytest.skip("rabbitmq-server not installed")
    with private_broker() as b:
        yield b


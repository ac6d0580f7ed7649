"""``msgbench run`` under SIGTERM / SIGHUP, and with a result directory it cannot write.

Real runs: the signal goes to the ``msgbench run`` process alone, as ``timeout`` or a CI
runner sends it; what was measured must still reach a file (or stderr), exit 1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import msgbench_argv

DEADLINE_S = 20.0
MEASURE_S = 1.2


def _start(out: Path) -> subprocess.Popen[str]:
    argv = msgbench_argv("run", "--subs", "2", "--duration", "30s", "--warmup", "0s",
                         "--rate", "1000", "--out", str(out), "--json")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_measuring(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    assert proc.stderr is not None
    deadline = time.monotonic() + DEADLINE_S
    for line in proc.stderr:
        if "measuring" in line:
            break
        assert time.monotonic() < deadline, "run never started measuring"
    return psutil.Process(proc.pid).children(recursive=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_writes_a_partial_result_and_exits_1(tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    proc = _start(tmp_path)
    children = _wait_measuring(proc)
    time.sleep(MEASURE_S)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    doc: dict[str, Any] = json.loads(out)
    assert doc["status"] == "failed" and doc["partial"] is True
    assert doc["reasons"][0] == f"terminated by {sig.name}"
    assert doc["summary"]["delivered"] > 0, "what was measured before the signal is kept"
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["partial"] is True
    time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {alive}"


def test_unwritable_result_directory_saves_the_result_elsewhere(run_cli: Any) -> None:
    r = run_cli("run", "--subs", "1", "-d", "300ms", "-w", "0s", "--rate", "1000",
                "--out", "/proc/nope")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    line = next(x for x in r.stderr.splitlines() if "cannot write the result" in x)
    saved = Path(line.rsplit("saved it as ", 1)[1].split(" instead")[0])
    try:
        doc = json.loads(saved.read_text())
        assert doc["schema"] == "msgbench.run" and doc["summary"]["delivered"] > 0
        assert str(saved) in r.stdout, "the summary names the file that holds the result"
    finally:
        saved.unlink(missing_ok=True)

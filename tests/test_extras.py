"""A target whose library is missing (its extra not installed) is listed as unavailable with
the pip command that adds it, refused in one line, and breaks nothing else.

The plugin here is a real distribution on the path (a dist-info with an entry point naming
its extra), whose module imports a library that does not exist; tests/test_packaging.py does
the same for msgbench's own targets from a built wheel.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import msgbench_argv

TIMEOUT_S = 60
MISSING = "msgbench_test_no_such_library"
EXPECTED = (f"target 'needs-lib' needs {MISSING} (not installed): "
            "pip install 'plugdist[fast]'")


def _plugins(root: Path) -> dict[str, str]:
    """Two plugins in one distribution: one needs a missing library (and names its extra),
    one is broken otherwise; returns the environment that puts them on the path."""
    info = root / "plugdist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugdist\nVersion: 1.0\n"
                                   "Provides-Extra: fast\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[msgbench.targets]\nneeds-lib = plugmod_lib:Target [fast]\n"
        "broken = plugmod_broken:Target\n", encoding="utf-8")
    (root / "plugmod_lib.py").write_text(f"import {MISSING}\n", encoding="utf-8")
    (root / "plugmod_broken.py").write_text("raise RuntimeError('plugin bug')\n",
                                            encoding="utf-8")
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _msgbench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(msgbench_argv(*args), capture_output=True, text=True, env=env,
                          timeout=TIMEOUT_S, check=False)


def test_a_missing_library_names_its_extra(tmp_path: Path) -> None:
    env = _plugins(tmp_path / "site")
    listed = _msgbench(env, "targets")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()
             if line and not line[0].isspace()}
    assert lines["needs-lib"].split()[1] == "unavailable"
    assert lines["needs-lib"].endswith(EXPECTED)
    assert "failed to load: plugin bug" in lines["broken"]  # no extra mends a bug
    assert lines["inproc"].split()[1] == "ready"
    refused = _msgbench(env, "run", "-t", "needs-lib", "--duration", "100ms")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [f"msgbench: error: {EXPECTED}"]
    assert "Traceback" not in refused.stderr
    assert _msgbench(env, "--help").returncode == 0

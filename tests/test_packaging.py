"""The wheel is complete: built, installed into a fresh venv, and run from there."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_S = 600


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    (wheel,) = wheels.glob("msgbench-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    exe = env_dir / "bin" / "msgbench"
    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "msgbench, version" in version.stdout
    where = subprocess.run(
        [str(py), "-c", "import msgbench.targets.inproc.target as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert str(env_dir) in where.stdout, "imported msgbench from outside the venv"
    run = subprocess.run(
        [
            str(exe),
            "run",
            "--subs",
            "2",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--json",
            "--quiet",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "ok"
    assert doc["summary"]["delivered"] == doc["summary"]["expected"] > 0

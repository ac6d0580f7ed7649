"""What a result needs to be reproducible: versions, machine, git revision."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from msgbench import __version__
from msgbench.workload.config import cpu_count

LIBRARIES = (
    "click",
    "hdrhistogram",
    "numpy",
    "psutil",
    "rich",
    "uvloop",
    "pyzmq",
    "redis",
    "hiredis",
    "websockets",
)
GIT_TIMEOUT_S = 2.0
CLOCK_NOTE = (
    "latency uses time.monotonic_ns(), one clock for all processes of this host; "
    "it is exact here and meaningless across hosts"
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain"],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=True,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev, "dirty": dirty}


def _injected() -> int:
    try:
        return max(0, int(os.environ.get("MSGBENCH_INJECT_COST_NS", "0") or 0))
    except ValueError:
        return 0


def _injected_work() -> float:
    """``MSGBENCH_INJECT_WORK``: fixed work units per delivery (see ``msgbench.run.inject``)."""
    try:
        return max(0.0, float(os.environ.get("MSGBENCH_INJECT_WORK", "0") or 0))
    except ValueError:
        return 0.0


def collect() -> dict[str, Any]:
    """Describe this machine and software for the result document."""
    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    uname = platform.uname()
    return {
        "msgbench": __version__,
        "git": _git_revision(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": libs,
        "cpu_model": _cpu_model(),
        "cores": cpu_count(),
        "cores_total": os.cpu_count(),
        "kernel": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "hostname": socket.gethostname(),
        "clock": CLOCK_NOTE,
        "injected_cost_ns": _injected(),
        "injected_work": _injected_work(),
    }

"""Run mypy on msgbench as the import package it installs as.

The product card's folders (``bench/`` is ``msgbench``, ``targets/`` is
``msgbench.targets``) are mapped by setuptools; mypy cannot follow that
mapping, so this script lays the package out as symlinks in a temporary
directory and checks it there together with the tests.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Build the symlink tree, run mypy, return its exit code."""
    with tempfile.TemporaryDirectory(prefix="msgbench-mypy-") as tmp:
        pkg = Path(tmp) / "msgbench"
        pkg.mkdir()
        for f in (ROOT / "bench").glob("*.py"):
            (pkg / f.name).symlink_to(f)
        (pkg / "targets").mkdir()
        for f in (ROOT / "targets").glob("*.py"):
            (pkg / "targets" / f.name).symlink_to(f)
        argv = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                str(pkg), *map(str, sorted((ROOT / "tests").glob("*.py"))),
                *map(str, sorted((ROOT / "benchmarks").glob("*.py")))]
        env_path = f"{tmp}:{ROOT / 'tests'}"
        return subprocess.call(argv, cwd=tmp, env={"MYPYPATH": env_path, "PATH": "/usr/bin:/bin"})


if __name__ == "__main__":
    sys.exit(main())

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


def _mirror(src: Path, dst: Path) -> None:
    """Link every ``.py`` file below ``src`` into the same place below ``dst``."""
    for f in src.rglob("*.py"):
        if "__pycache__" in f.parts:
            continue
        link = dst / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f)


def main() -> int:
    """Build the symlink tree, run mypy, return its exit code."""
    with tempfile.TemporaryDirectory(prefix="msgbench-mypy-") as tmp:
        pkg = Path(tmp) / "msgbench"
        _mirror(ROOT / "bench", pkg)
        _mirror(ROOT / "targets", pkg / "targets")
        argv = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                str(pkg), *map(str, sorted((ROOT / "tests").glob("*.py"))),
                *map(str, sorted((ROOT / "benchmarks").glob("*.py")))]
        env_path = f"{tmp}:{ROOT / 'tests'}"
        return subprocess.call(argv, cwd=tmp, env={"MYPYPATH": env_path, "PATH": "/usr/bin:/bin"})


if __name__ == "__main__":
    sys.exit(main())

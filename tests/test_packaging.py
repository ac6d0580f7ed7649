"""The wheel is complete and its extras are honest: built, installed into a fresh venv with
only what its metadata asks for, and run from there.

Nothing is downloaded. The fresh venv's pip installs the wheel alone (``--no-deps
--no-index``); the distributions its ``Requires-Dist`` names (for the extras asked, and
theirs, transitively) are linked in from the environment running the tests, as one directory
on the venv's path. So the venv holds exactly what ``pip install 'msgbench[...]'`` would put
there, at the lock's versions, and a missing entry in the metadata fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "msgbench"
BUILD_TIMEOUT_S = 300
STEP_TIMEOUT_S = 120
VIEW_PTH = "msgbench-test-view.pth"
"""The .pth file in the fresh venv that puts the linked distributions on its path."""
NO_EXTRA = ""
"""The ``extra`` a marker is evaluated with for a distribution's base requirements."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The msgbench wheel, built by setuptools' PEP 517 backend as pip would build it."""
    out = tmp_path_factory.mktemp("wheels")
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_wheel(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", build, str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=BUILD_TIMEOUT_S)
    (found,) = out.glob(f"{PROJECT}-*.whl")
    return found


def _wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(name).decode())
    return meta.get_all("Requires-Dist") or []


def _needed(wheel: Path, extras: frozenset[str]) -> set[str]:
    """The distributions msgbench with ``extras`` needs, transitively, by canonical name."""
    seen: set[tuple[str, str]] = set()
    todo = [(PROJECT, e) for e in {NO_EXTRA, *extras}]
    out: set[str] = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        reqs = (_wheel_requires(wheel) if name == PROJECT
                else metadata.distribution(name).requires or [])
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            dep = canonicalize_name(req.name)
            if dep != PROJECT:
                out.add(dep)
            todo += [(dep, e) for e in {NO_EXTRA, *req.extras}]
    return out


def _link_view(names: set[str], view: Path) -> None:
    """Symlink each distribution's top-level files (packages, modules, dist-info) into
    ``view``, leaving out scripts (outside site-packages) and .pth files."""
    view.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = view / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))).resolve())


def _venv(tmp: Path, wheel: Path, extras: frozenset[str]) -> Path:
    """A fresh venv with the wheel and what it needs with ``extras``; returns its bin/."""
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)  # ensurepip: pip's bundled wheel, offline
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=STEP_TIMEOUT_S)
    # Python 3.11's ensurepip also installs an old setuptools, which would shadow the lock's
    # (hdrhistogram requires a newer one): the venv keeps pip alone, as `python -m venv` on 3.12
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"],
                   check=True, capture_output=True, timeout=STEP_TIMEOUT_S)
    _link_view(_needed(wheel, extras), tmp / "view")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], capture_output=True, text=True, check=True,
                          timeout=STEP_TIMEOUT_S).stdout.strip()
    Path(site, VIEW_PTH).write_text(f"{tmp / 'view'}\n", encoding="utf-8")
    # pip's own check: every requirement of every installed distribution is there
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True,
                           timeout=STEP_TIMEOUT_S, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    return env_dir / "bin"


def _msgbench(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "msgbench"), *args], capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)


def _listing(bin_dir: Path) -> dict[str, str]:
    """``msgbench targets``: each target's first line (state and what it is or needs)."""
    out = _msgbench(bin_dir, "targets")
    assert out.returncode == 0, out.stderr
    return {line.split()[0]: line for line in out.stdout.splitlines()
            if line and not line[0].isspace()}


def _run_ok(bin_dir: Path, out: Path, *target: str) -> None:
    # a modest fixed rate: at --rate max a ZeroMQ PUB drops past its high-water mark by design
    run = _msgbench(bin_dir, "run", *target, "--subs", "2", "--rate", "2000",
                    "--duration", "500ms",
                    "--warmup", "100ms", "--json", "--quiet", "--out", str(out))
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "ok"
    assert doc["summary"]["delivered"] == doc["summary"]["expected"] > 0


def test_the_base_wheel_is_the_driver_alone(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path, wheel, frozenset())
    py = str(bin_dir / "python")
    where = subprocess.run([py, "-c", "import msgbench.targets.inproc.target as m; "
                            "print(m.__file__)"], capture_output=True, text=True, check=True,
                           timeout=STEP_TIMEOUT_S)
    assert str(tmp_path / "venv") in where.stdout, "imported msgbench from outside the venv"
    for library in ("zmq", "redis", "hiredis", "websockets", "pamqp", "aio_pika"):
        found = subprocess.run([py, "-c", f"import {library}"], capture_output=True,
                               timeout=STEP_TIMEOUT_S, check=False)
        assert found.returncode != 0, f"{library} is in the base install"
    assert "msgbench, version" in _msgbench(bin_dir, "--version").stdout
    assert _msgbench(bin_dir, "--help").returncode == 0
    listed = _listing(bin_dir)
    assert listed["inproc"].split()[1] == "ready"
    for name, extra in (("zmq", "zmq"), ("redis", "redis"), ("redis-streams", "redis"),
                        ("ws", "ws"), ("rabbitmq", "rabbitmq")):
        assert listed[name].split()[1] == "unavailable", listed[name]
        assert f"pip install 'msgbench[{extra}]'" in listed[name]
    refused = _msgbench(bin_dir, "run", "-t", "zmq", "--duration", "100ms")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "msgbench: error: target 'zmq' needs zmq (not installed): pip install 'msgbench[zmq]'"]
    _run_ok(bin_dir, tmp_path / "out")


def test_one_extra_adds_its_targets_only(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path, wheel, frozenset({"zmq"}))
    listed = _listing(bin_dir)
    assert listed["zmq"].split()[1] == "ready", listed["zmq"]
    assert "pip install 'msgbench[redis]'" in listed["redis"]
    assert "pip install 'msgbench[ws]'" in listed["ws"]
    _run_ok(bin_dir, tmp_path / "out", "-t", "zmq")


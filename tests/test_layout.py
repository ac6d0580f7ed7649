"""The tree shows the layers, and imports only point down (see DESIGN: one way down)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "kit": {"api"},
    "workload": {"api"},
    "accounting": {"workload"},
    "results": {"accounting", "workload", "api"},
    "run": {"accounting", "workload", "results", "api"},
    "analysis": {"results", "accounting", "workload", "api"},
    "orchestration": {"analysis", "results", "workload", "api", "kit"},
    "cli": {"run", "analysis", "orchestration", "results", "accounting", "workload", "api",
            "kit", "targets"},
}
"""Which layers each layer of ``msgbench`` may import (besides itself)."""
LEAVES = {"msgbench.accounting.counters", "msgbench.kit.urls", "msgbench.run.inject"}
"""Modules any layer may import: they import nothing of msgbench themselves."""
TARGET_MAY_IMPORT = {"api", "kit"}
MAX_LINES = 400
"""Longest a source module may be: beyond it a module mixes jobs (issue 23)."""


def _module(path: Path) -> str:
    """The module a source file is: its path below its portion's root (path equals module)."""
    root = ROOT / ("targets" if path.is_relative_to(ROOT / "targets") else "bench")
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("msgbench.")}


def _sources() -> list[Path]:
    return sorted(p for p in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "targets").rglob("*.py")]
                  if "__pycache__" not in p.parts)


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_imports_point_down() -> None:
    wrong = []
    for path in _sources():
        me = _module(path)
        layer = _layer(me)
        if layer in ("", "__main__"):
            continue
        for imp in _imports(path):
            other = _layer(imp)
            leaf = any(imp == m or imp.startswith(m + ".") for m in LEAVES)
            if other in (layer, "__version__") or leaf or other == "":
                if layer == "targets" and other == "targets":
                    family = me.split(".")[2]
                    if len(imp.split(".")) > 2 and imp.split(".")[2] != family:
                        wrong.append(f"{me} imports another design family: {imp}")
                continue
            allowed = TARGET_MAY_IMPORT if layer == "targets" else ALLOWED.get(layer, set())
            if other not in allowed:
                wrong.append(f"{me} ({layer}) imports {imp} ({other})")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_cli() -> None:
    users = [f"{_module(p)} -> {i}" for p in _sources() for i in _imports(p)
             if _layer(i) == "cli" and _layer(_module(p)) not in ("cli", "__main__")]
    assert not users, users


def test_leaves_import_nothing_of_msgbench() -> None:
    for leaf in LEAVES:
        path = ROOT / "bench" / Path(*leaf.split(".")).with_suffix(".py")
        assert not _imports(path), leaf


def test_targets_never_read_the_envelope() -> None:
    readers = [f"{_module(p)} -> {i}" for p in _sources() for i in _imports(p)
               if _module(p).startswith("msgbench.targets") and "envelope" in i]
    assert not readers, readers


def test_path_equals_module_and_the_wheel_holds_every_package() -> None:
    """Every source file's path is its module (tools read the plain tree), and setuptools'
    own discovery (no hand-kept list) finds every package of both portions."""
    from setuptools.config.pyprojecttoml import read_configuration

    for p in _sources():
        assert _module(p).split(".")[0] == "msgbench", p
        if _module(p).startswith("msgbench.targets"):
            assert p.is_relative_to(ROOT / "targets" / "msgbench" / "targets"), p
    assert not (ROOT / "targets" / "msgbench" / "__init__.py").exists(), \
        "targets/msgbench/ must stay a namespace portion: its __init__ would shadow the driver's"
    config = read_configuration(ROOT / "pyproject.toml", expand=True)
    declared = set(config["tool"]["setuptools"]["packages"])
    found = {_module(p.parent / "__init__.py") for p in _sources() if p.name == "__init__.py"}
    assert found <= declared, f"packages setuptools does not find: {found - declared}"


def test_no_module_is_over_the_line_limit() -> None:
    """Both trees (the driver and the targets): a module over :data:`MAX_LINES` lines is to
    be split along its jobs."""
    lines = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in _sources()}
    assert any(p.startswith("targets/") for p in lines) and any(
        p.startswith("bench/") for p in lines), "both trees are counted"
    long = sorted(f"{p}: {n} lines" for p, n in lines.items()
                  if n > MAX_LINES)
    assert not long, f"over {MAX_LINES} lines, split along its jobs: {long}"

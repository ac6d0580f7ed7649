"""A matrix of runs: cells from flags or a workload file, each run as its own process.

Every cell is a fresh ``msgbench run ... --json`` subprocess (isolated: a
crashed or hung cell cannot take the sweep down, and no state leaks from one
cell into the next). A cell that fails is recorded with its reason and the
sweep goes on. ``ci`` and ``scripts/publish_results.py`` reuse this runner.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msgbench.analysis.report import Row
from msgbench.api.registry import secret_options
from msgbench.kit.urls import mask_url
from msgbench.results.model import ResultError, RunResult, load
from msgbench.workload.config import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_PROBE_TIMEOUT_S,
    parse_duration,
)

MATRIX_KEYS = ("target", "pubs", "subs", "size", "rate", "topics")
SETTING_KEYS = ("duration", "warmup", "trials", "args")
DEFAULTS: dict[str, Any] = {
    "target": ["inproc"], "pubs": [1], "subs": [1], "size": [64], "rate": ["max"],
    "topics": [1], "duration": "5s", "warmup": "1s", "trials": 1, "args": [],
}
CELL_MARGIN_S = 60.0
"""Beyond warm-up + duration + probe and drain timeouts, before a cell counts as hung."""
INTERRUPT_GRACE_S = 10.0
"""After Ctrl-C, how long a run may take to write its partial result before it is killed."""
STATUS_ERROR = "error"
"""Status of a cell that left no result file (bad input, crash, timeout)."""


class WorkloadError(ValueError):
    """A bad workload file or matrix; ``str(exc)`` is one line for the user."""


@dataclass(frozen=True)
class Cell:
    """One run of the matrix."""

    target: str
    """Target name, optionally followed by its own flags: ``zmq --zmq-mode proxy``."""
    pubs: int
    subs: int
    size: int
    rate: str
    topics: int
    duration: str
    warmup: str
    args: tuple[str, ...] = ()
    trial: int = 0

    @property
    def target_name(self) -> str:
        """The target alone, without its flags."""
        return shlex.split(self.target)[0]

    def run_args(self) -> list[str]:
        """The ``msgbench run`` arguments of this cell (no ``--out``)."""
        name, *target_flags = shlex.split(self.target)
        return [
            "--target", name, *target_flags, "--pubs", str(self.pubs), "--subs", str(self.subs),
            "--size", str(self.size), "--rate", self.rate, "--topics", str(self.topics),
            "--duration", self.duration, "--warmup", self.warmup, *self.args,
        ]

    def label(self) -> str:
        """Short text for progress lines."""
        return mask_url(f"{self.target} {self.pubs}x{self.subs} {self.size}B rate {self.rate}")

    def timeout_s(self) -> float:
        """How long the cell may take before it is killed as hung."""
        return (
            parse_duration(self.duration) + parse_duration(self.warmup)
            + _arg_duration(self.args, "--probe-timeout", DEFAULT_PROBE_TIMEOUT_S)
            + _arg_duration(self.args, "--drain-timeout", DEFAULT_DRAIN_TIMEOUT_S)
            + CELL_MARGIN_S
        )


def _arg_duration(args: Sequence[str], option: str, default: float) -> float:
    """The duration ``option`` is given in ``args`` (``--x 5s`` or ``--x=5s``; the last one
    counts, as for click), else ``default``. A value that does not parse keeps the default:
    the run itself rejects it with its own message."""
    value: str | None = None
    for i, a in enumerate(args):
        if a == option and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(option + "="):
            value = a.split("=", 1)[1]
    if value is None:
        return default
    try:
        return parse_duration(value, option)
    except ValueError:
        return default


@dataclass(frozen=True)
class Outcome:
    """What one cell produced: a result file, or a reason why not."""

    cell: Cell
    returncode: int
    path: Path | None = None
    result: RunResult | None = None
    reason: str = ""

    @property
    def ran(self) -> bool:
        """True when the run finished (ok or degraded); False if it failed or never ran."""
        return self.returncode == 0 and self.result is not None

    def row(self) -> Row:
        """The report row: from the result, or an ``error`` row naming the reason."""
        if self.result is not None:
            return Row.from_result(self.path or "(not written)", self.result)
        c = self.cell
        rate = None if c.rate == "max" else _rate_value(c.rate)
        variant = " ".join(shlex.split(c.target)[1:])
        return Row(name="", target=c.target_name, variant=variant, pubs=c.pubs, subs=c.subs,
                   size=c.size, rate=rate, status=STATUS_ERROR, reasons=(self.reason,))


def _default_sigint() -> None:
    # a sweep started in the background inherits an ignored SIGINT; its runs must not,
    # or they could not be stopped gracefully with their partial result
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _rate_value(text: str) -> float | None:
    from msgbench.workload.config import ConfigError, parse_rate

    try:
        return parse_rate(text)
    except ConfigError:
        return None


def _as_list(key: str, value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise WorkloadError(f"{key}: empty list")
    if key == "target":
        return [str(v).strip() for v in items]
    if key == "rate":
        return [str(v) for v in items]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            try:
                v = int(str(v))
            except ValueError:
                raise WorkloadError(f"{key}: {v!r} is not a whole number") from None
        out.append(v)
    return out


def split_list(text: str) -> list[str]:
    """``"1,8,32"`` -> ``["1", "8", "32"]`` (how matrix flags are typed)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def read_workload(path: Path) -> dict[str, Any]:
    """A workload file (``.toml``, ``.yaml``/``.yml``, or JSON) as a dict of matrix keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # every parser has its own error type; the user needs one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkloadError(f"{path}: {first}") from exc
    if not isinstance(data, dict):
        raise WorkloadError(f"{path}: expected a table of keys such as subs = [1, 8, 32]")
    unknown = set(data) - set(MATRIX_KEYS) - set(SETTING_KEYS)
    if unknown:
        raise WorkloadError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(MATRIX_KEYS + SETTING_KEYS)}"
        )
    return data


def expand(spec: Mapping[str, Any]) -> list[Cell]:
    """Cells of the matrix ``spec`` (keys of :data:`MATRIX_KEYS` and :data:`SETTING_KEYS`).

    Missing keys take :data:`DEFAULTS`. Trials repeat the whole matrix, so
    repeated cells are interleaved in time rather than run back to back.
    """
    merged = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    lists = [_as_list(k, merged[k]) for k in MATRIX_KEYS]
    args = merged["args"]
    try:
        if isinstance(args, str):
            args = shlex.split(args)
        for target in _as_list("target", merged["target"]):
            if not shlex.split(str(target)):
                raise WorkloadError("target: an empty target name")
    except WorkloadError:
        raise
    except ValueError as exc:  # shlex: unbalanced quotes
        raise WorkloadError(f"cannot split: {exc}; check the quoting of target and args") from None
    if not isinstance(args, list):
        raise WorkloadError("args: expected a list of extra `msgbench run` arguments")
    try:
        trials = int(merged["trials"])
        parse_duration(str(merged["duration"]))
        parse_duration(str(merged["warmup"]))
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None
    if trials < 1:
        raise WorkloadError("trials must be at least 1")
    cells = []
    for trial in range(trials):
        for target, pubs, subs, size, rate, topics in itertools.product(*lists):
            cells.append(Cell(target, pubs, subs, size, rate, topics, str(merged["duration"]),
                              str(merged["warmup"]), tuple(str(a) for a in args), trial))
    return cells


def msgbench_command(python: str | None = None) -> list[str]:
    """argv prefix that runs msgbench with ``python`` (default: this interpreter)."""
    return [python or sys.executable, "-m", "msgbench"]


@dataclass
class Runner:
    """Runs cells as subprocesses of ``command`` (``[python, -m, msgbench]``)."""

    command: Sequence[str] = field(default_factory=msgbench_command)
    env: Mapping[str, str] | None = None
    """Extra environment variables for the runs."""

    def run(self, cell: Cell, out_dir: Path) -> Outcome:
        """Run one cell, writing its result file into ``out_dir``; never raises for a bad run."""
        out_dir.mkdir(parents=True, exist_ok=True)
        before = set(out_dir.glob("*.json"))
        args, secrets = secrets_to_env(cell.run_args())
        argv = [*self.command, "run", *args, "--out", str(out_dir), "--json", "-q"]
        env = {**os.environ, **(self.env or {}), **secrets}
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, start_new_session=True,
                                    preexec_fn=_default_sigint)
        except OSError as exc:
            return Outcome(cell, -1, reason=f"cannot start msgbench: {exc}")
        try:
            out, err = proc.communicate(timeout=cell.timeout_s())
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and every worker it spawned
            proc.communicate()
            return Outcome(cell, -1, reason=f"no answer after {cell.timeout_s():.0f} s: killed")
        except BaseException:
            # Ctrl-C: the run is in its own session and did not see it; stop it the way
            # a user would (it writes its partial result), then make sure it is gone
            _interrupt(proc)
            raise
        new = sorted(set(out_dir.glob("*.json")) - before)
        result, path = None, None
        if new:
            path = new[-1]
            try:
                result = load(path)
            except ResultError as exc:
                return Outcome(cell, proc.returncode, path, None, str(exc))
        elif out.strip():
            try:  # the file could not be written, but --json printed the document
                result = RunResult.from_json(json.loads(out))
            except (ValueError, ResultError):
                result = None
        reason = ""
        if result is not None and result.reasons:
            reason = result.reasons[0]
        elif proc.returncode != 0:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit code {proc.returncode}"
            reason = reason.removeprefix("msgbench: error: ")
        return Outcome(cell, proc.returncode, path, result, mask_url(reason))


def secrets_to_env(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` without the options that may hold a password (every target option declared
    ``secret``: ``--redis-url URL``, ``--amqp-url=URL``, ...), and the environment that gives
    them to ``msgbench run`` instead: a command line is visible to every user of the
    machine (``ps``)."""
    secret = secret_options()
    out: list[str] = []
    env: dict[str, str] = {}
    it = iter(args)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in secret and flag.startswith("--"):
            if not eq:
                nxt = next(it, None)
                if nxt is None:
                    out.append(a)  # let the run say the value is missing
                    break
                value = nxt
            env[secret[flag]] = value
            continue
        out.append(a)
    return out, env


INSTALL_TIMEOUT_S = 300.0


def _check(argv: Sequence[str], what: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False,
                              **kw)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkloadError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise WorkloadError(f"{what}: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc


def install_revision(rev: str, workdir: Path) -> list[str]:
    """Install git revision ``rev`` of this checkout into a venv under ``workdir``.

    The tree comes from ``git archive`` (unlike ``git worktree`` it leaves no
    trace in the repository), the venv sees the system site-packages so no
    dependency is downloaded, and ``pip install --no-deps --no-build-isolation``
    installs just msgbench. Returns the argv prefix that runs that msgbench.
    Raises :class:`WorkloadError` with one line when any step fails.
    """
    import io
    import tarfile

    here = Path(__file__).resolve().parent
    top = _check(["git", "-C", str(here), "rev-parse", "--show-toplevel"],
                 "msgbench is not running from a git checkout").stdout.decode().strip()
    commit = _check(["git", "-C", top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                    f"unknown git revision {rev!r}").stdout.decode().strip()
    tar = _check(["git", "-C", top, "archive", "--format=tar", commit], "git archive").stdout
    src = workdir / "src"
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(src, filter="data")
    venv = workdir / "venv"
    _check([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
           "venv")
    python = str(venv / "bin" / "python")
    # --system-site-packages reaches the base interpreter's packages only; when msgbench runs
    # from a virtual environment (CI's own), its dependencies and build tools live there.
    # A .pth line appends that folder after the new venv's own (whose msgbench still wins).
    import sysconfig

    here_site = sysconfig.get_paths()["purelib"]
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "msgbench-baseline-deps.pth").write_text(here_site + "\n")
    _check([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", str(src)], f"pip install of revision {rev}")
    where = _check([python, "-c", "import msgbench; print(msgbench.__file__)"],
                   f"import of revision {rev}").stdout.decode().strip()
    if not where.startswith(str(venv)):
        raise WorkloadError(f"revision {rev} installed, but the venv imports {where}")
    return [python, "-m", "msgbench"]

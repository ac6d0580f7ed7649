"""Regenerate results/published/ and results/README.md: the tables that answer "which design
for my broadcast path?", "... for my task queue?" and "... for RPC?".

The designs are asked of the installed targets, never listed here: every ready target's
declared variants (:mod:`msgbench.orchestration.designs`) that carry the section's pattern,
inproc first. Broadcast, for each:

1. capacity at 4 x 32, 64 B: the highest rate with p99 <= 10 ms and nothing lost
   (``msgbench capacity``), p50 / p99 at 50 % of it, msgs per CPU-second, the limiting process;
2. fan-out: 1 publisher to 1 ... 1000 subscribers at a fixed total delivery rate: p99 and CPU
   per delivery against subscribers;
3. message size at 4 x 32: capacity in msgs/s and MB/s;
4. the latency-throughput chart of every design at 4 x 32.

Task distribution (``--pattern tasks``): capacity at 2 producers x 4
workers with no work, and one run each at 2 x 500/s with ``--work fixed:1ms`` and worker 0
ten times slower (shares, Jain, idle with a backlog, completion p99, lost, redelivered).

Request/reply (``--pattern rpc``): open-loop capacity at 8 requesters x
2 responders (p99 <= 10 ms, no timeout), and 1 x 1 with one call in flight (round trip and
its three legs).

A design that refuses its run anyway (exit 2: a target that declares more than it carries)
is skipped with a line, never a failed publish; the README is written by
``published_readme.py`` beside this script. Each table names its machine and versions and a
takeaway computed from the data. Every step is a fresh ``msgbench run``; the whole
regeneration is bounded by ``--budget``.

    python3 scripts/publish_results.py                 # measure, then write
    python3 scripts/publish_results.py --no-run        # rewrite from the stored files
    python3 scripts/publish_results.py --sections rpc  # remeasure one, keep the others
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from msgbench.analysis import pattern_tables
from msgbench.analysis.capacity_table import load_documents
from msgbench.analysis.units import format_count
from msgbench.api.target import Pattern, Target
from msgbench.orchestration.capacity import BadWorkload, Plan, Search
from msgbench.orchestration.designs import designs as pattern_designs
from msgbench.orchestration.designs import narrowed, ready_targets
from msgbench.orchestration.sweep import Cell, Runner
from msgbench.results.capacity import Criteria, Step
from msgbench.results.model import ResultError
from msgbench.workload.values import parse_duration, parse_rate
from published_readme import MAX_PUBLISH_DELAY, SLO, readme

ROOT = Path(__file__).resolve().parent.parent
SHARES = {"capacity": 0.25, "fanout": 0.1, "size": 0.28, "tasks": 0.2, "rpc": 0.17}
"""How the budget is split between the questions (broadcast keeps its 25-minute time at
the 40-minute default)."""
SINGLE_RUN_SHARE = 0.25
"""Of the tasks and rpc shares: the single runs (fairness, one call in flight); the capacity
searches get the rest."""
SECTIONS = {"broadcast": ("capacity", "fanout", "size"), "tasks": ("tasks",), "rpc": ("rpc",)}
"""``--sections`` names, and the :data:`SHARES` and directories of ``published/`` of each."""
TASK_PRODUCERS, TASK_WORKERS, TASK_START_RATE = 2, 4, 1000.0
TASK_FAIR_RATE, TASK_WORK, SLOW_WORKER = "500", "fixed:1ms", "0:x10"
"""The fairness runs: 2 x 500/s of 1 ms tasks, worker 0 ten times slower."""
RPC_REQUESTERS, RPC_RESPONDERS, RPC_START_RATE = 8, 2, 200.0


@dataclass(frozen=True)
class Settings:
    """What to measure, from the command line."""

    designs: tuple[str, ...]
    pubs: int
    subs: int
    fanout_subs: tuple[int, ...]
    fanout_deliveries: float
    sizes: tuple[int, ...]
    duration: str
    warmup: str
    budget_s: float
    task_designs: tuple[str, ...] = ()
    rpc_designs: tuple[str, ...] = ()
    sections: tuple[str, ...] = tuple(SECTIONS)

    def seconds(self, share: str) -> float:
        """The budget of one of :data:`SHARES`: its part of ``budget_s``, the shares of the
        sections not measured now handed out in proportion to the others."""
        chosen = sum(SHARES[d] for name in self.sections for d in SECTIONS[name])
        return self.budget_s * SHARES[share] / (chosen or 1.0)


def designs_here(wanted: str | None, pattern: Pattern,
                 ready: Mapping[str, type[Target]]) -> tuple[str, ...]:
    """The designs of the ``ready`` targets that carry ``pattern`` (as their declarations
    say: :mod:`msgbench.orchestration.designs`), narrowed to ``wanted`` (comma-separated
    target names or designs), as ``msgbench run -t`` takes them."""
    return tuple(d.flags for d in narrowed(pattern_designs(pattern, ready), wanted))


def _file_name(flags: str, size: int) -> str:
    return f"{flags.replace(' --', '_').replace(' ', '-').replace('--', '')}-{size}B.json"


def _search(flags: str, pubs: int, subs: int, size: int, s: Settings, budget_s: float,
            out: Path, start: float, half: bool, precision: float, err: Console,
            args: tuple[str, ...] = ()) -> str:
    """One capacity search into ``out``; returns why the design was skipped (it refused
    the workload as bad input, e.g. does not carry the pattern), or empty."""
    cell = Cell(flags, pubs, subs, size, "1", 1, s.duration, s.warmup, args)
    criteria = Criteria(slo_p99_ns=int(parse_duration(SLO) * 1e9),
                        max_publish_delay_ns=int(parse_duration(MAX_PUBLISH_DELAY) * 1e9))
    plan = Plan(start_rate=start, precision=precision, budget_s=budget_s, half=half)
    what = " ".join(a for a in args if not a.startswith("-"))
    err.print(f"[bold]{flags}[/bold] {what} {pubs}x{subs} {size} B: capacity search, "
              f"budget {budget_s:.0f} s", highlight=False)
    def show(st: Step) -> None:
        verdict = "pass" if st.passed else "FAIL " + st.why
        err.print(f"  {st.phase:<6} {format_count(st.offered):>8}/s  {verdict}",
                  highlight=False, soft_wrap=True)

    try:
        result = Search(cell, criteria, plan, out / _file_name(flags, size), Runner(),
                        on_step=show).run()
    except BadWorkload as exc:
        shutil.rmtree(out / _file_name(flags, size).removesuffix(".json"), ignore_errors=True)
        err.print(f"  [yellow]skipped: {exc}[/yellow]", highlight=False)
        return str(exc) or "refused the workload"
    err.print(f"  -> {format_count(result.capacity_offered or 0)}/s ({result.stopped})",
              highlight=False)
    return ""


def measure(s: Settings, staging: Path, err: Console) -> None:
    """Run the chosen sections into ``staging`` (capacity/, fanout/, size/, tasks/, rpc/)."""
    if "broadcast" in s.sections:
        measure_broadcast(s, staging, err)
    if "tasks" in s.sections:
        measure_tasks(s, staging / "tasks", err)
    if "rpc" in s.sections:
        measure_rpc(s, staging / "rpc", err)


def measure_broadcast(s: Settings, staging: Path, err: Console) -> None:
    """Capacity, fan-out and size into ``staging``'s capacity/, fanout/, size/."""
    n = max(1, len(s.designs))
    cap_dir, fan_dir, size_dir = staging / "capacity", staging / "fanout", staging / "size"
    refused = set()
    for flags in s.designs:
        if _search(flags, s.pubs, s.subs, 64, s, s.seconds("capacity") / n, cap_dir,
                   1000.0, True, 0.1, err):
            refused.add(flags)
    designs = [d for d in s.designs if d not in refused]
    per_run = s.seconds("fanout") / max(1, n * len(s.fanout_subs))
    fanout_ends = time.monotonic() + s.seconds("fanout")
    runner = Runner()
    for flags in designs:
        for subs in s.fanout_subs:
            if time.monotonic() > fanout_ends:
                err.print(f"[red]{flags} fan-out 1x{subs}: skipped, its budget is spent[/red]",
                          highlight=False)
                continue
            rate = s.fanout_deliveries / subs
            cell = Cell(flags, 1, subs, 64, f"{rate:g}", 1, s.duration, s.warmup,
                        ("--drain-timeout", "1s"))
            err.print(f"[bold]{flags}[/bold] fan-out 1x{subs} at {rate:g}/s "
                      f"(~{per_run:.0f} s)", highlight=False)
            outcome = runner.run(cell, fan_dir)
            if not outcome.ran:
                err.print(f"  [red]{outcome.reason}[/red]", highlight=False)
    _, caps = load_documents([str(cap_dir)]) if any(cap_dir.glob("*.json")) else ([], [])
    found = {c.workload["target"]: c.capacity_rate for _, c in caps}
    sizes = [z for z in s.sizes if z != 64]
    for flags in designs:
        start = found.get(flags) or 1000.0  # bigger messages rarely go faster than 64 B
        for size in sizes:
            _search(flags, s.pubs, s.subs, size, s,
                    s.seconds("size") / max(1, n * len(sizes)), size_dir, start,
                    False, 0.25, err)


def _single_runs(designs: tuple[str, ...], cell_of: dict[str, Cell], out: Path,
                 budget_s: float, skipped: list[str], err: Console) -> None:
    """One run per design into ``out``, within ``budget_s``; a design that refuses the
    workload (exit 2, no result) is added to ``skipped``."""
    ends = time.monotonic() + budget_s
    runner = Runner()
    for flags in designs:
        cell = cell_of[flags]
        if time.monotonic() > ends:
            err.print(f"[red]{cell.label()}: skipped, its budget is spent[/red]",
                      highlight=False)
            skipped.append(f"{flags}: no time left for its run in the budget")
            continue
        err.print(f"[bold]{flags}[/bold] {' '.join(cell.args)} {cell.pubs}x{cell.subs} "
                  f"rate {cell.rate}", highlight=False)
        outcome = runner.run(cell, out)
        if outcome.returncode == 2 and outcome.result is None:
            err.print(f"  [yellow]skipped: {outcome.reason}[/yellow]", highlight=False)
            skipped.append(f"{flags}: {outcome.reason}")
        elif not outcome.ran:
            err.print(f"  [red]{outcome.reason}[/red]", highlight=False)


def _note_skipped(directory: Path, skipped: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(skipped))
    (directory / pattern_tables.SKIPPED_FILE).write_text(
        "".join(f"{line}\n" for line in unique), encoding="utf-8")


def _pattern(s: Settings, out: Path, err: Console, pattern: str, designs: tuple[str, ...],
             size: tuple[int, int, float], single: dict[str, Cell]) -> None:
    """Capacity searches of ``pattern`` at ``size`` (pubs, subs, start rate) into
    ``out/capacity``, then the ``single`` runs of the designs that ran into ``out/<dir>``."""
    skipped: list[str] = []
    ran = []
    ends = time.monotonic() + s.seconds(pattern) * (1 - SINGLE_RUN_SHARE)
    for i, flags in enumerate(designs):
        # what is left, shared by the designs still to come: a skipped one leaves its share
        search_s = max(0.0, ends - time.monotonic()) / (len(designs) - i)
        why = _search(flags, size[0], size[1], 64, s, search_s, out / "capacity", size[2],
                      True, 0.1, err, ("--pattern", pattern))
        if why:
            skipped.append(f"{flags}: {why}")
        else:
            ran.append(flags)
    sub = "fairness" if pattern == "tasks" else "one-call"
    _single_runs(tuple(ran), single, out / sub, s.seconds(pattern) * SINGLE_RUN_SHARE,
                 skipped, err)
    _note_skipped(out, skipped)


def measure_tasks(s: Settings, out: Path, err: Console) -> None:
    """Task capacity (2 x 4, no work) into ``out/capacity``, fairness runs (1 ms work,
    worker 0 ten times slower) into ``out/fairness``, skipped designs in ``skipped.txt``."""
    fair = {f: Cell(f, TASK_PRODUCERS, TASK_WORKERS, 64, TASK_FAIR_RATE, 1, s.duration,
                    s.warmup, ("--pattern", "tasks", "--work", TASK_WORK, "--slow-worker",
                               SLOW_WORKER)) for f in s.task_designs}
    _pattern(s, out, err, "tasks", s.task_designs,
             (TASK_PRODUCERS, TASK_WORKERS, TASK_START_RATE), fair)


def measure_rpc(s: Settings, out: Path, err: Console) -> None:
    """Request/reply capacity (8 x 2, open loop) into ``out/capacity``, 1 x 1 with one call
    in flight into ``out/one-call``, skipped designs in ``skipped.txt``."""
    one = {f: Cell(f, 1, 1, 64, "max", 1, s.duration, s.warmup,
                   ("--pattern", "rpc", "--inflight", "1")) for f in s.rpc_designs}
    _pattern(s, out, err, "rpc", s.rpc_designs,
             (RPC_REQUESTERS, RPC_RESPONDERS, RPC_START_RATE), one)


def _keep_unmeasured(out: Path, staging: Path, sections: tuple[str, ...]) -> None:
    """Copy into ``staging`` the stored directories of the sections not measured now."""
    for name, dirs in SECTIONS.items():
        if name in sections:
            continue
        for d in dirs:
            if (out / d).is_dir() and not (staging / d).exists():
                shutil.copytree(out / d, staging / d)


def _swap_in(new: Path, out: Path) -> None:
    """Replace the directory ``out`` by ``new`` (renames, so never half of each)."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what}: expected whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{what}: expected positive whole numbers, got {text!r}")
    return values


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise ValueError(f"--sections: expected some of {', '.join(SECTIONS)}, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Measure (unless --no-run) and write; exit 0, or 2 for bad input, 130 interrupted."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--results-dir", default=str(ROOT / "results"),
                    help="where published/ and README.md go [results/]")
    ap.add_argument("--targets", help="comma-separated target names [every ready one]")
    ap.add_argument("--pubs", default="4", help="publishers of the capacity tables [4]")
    ap.add_argument("--subs", default="32", help="subscribers of the capacity tables [32]")
    ap.add_argument("--fanout-subs", default="1,10,100,1000",
                    help="subscriber counts of the fan-out table [1,10,100,1000]")
    ap.add_argument("--fanout-deliveries", default="20k",
                    help="total deliveries/s of the fan-out table [20k]")
    ap.add_argument("--sizes", default="32,64,1024,65536",
                    help="message sizes of the size table, bytes [32,64,1024,65536]")
    ap.add_argument("--duration", default="1s", help="measured time per step [1s]")
    ap.add_argument("--warmup", default="0.5s", help="warm-up per step [0.5s]")
    ap.add_argument("--budget", default="40m", help="wall-time bound of the measuring [40m]")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="what to measure: broadcast, tasks, rpc (comma-separated; the stored "
                         "files of the others are kept) [all]")
    ap.add_argument("--no-run", action="store_true",
                    help="only rewrite README.md and the chart from the stored files")
    args = ap.parse_args(argv)
    results_dir = Path(args.results_dir)
    out = results_dir / "published"
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--no-run"]
    command = shlex.join(["python3", "scripts/publish_results.py", *given])
    err = Console(stderr=True)
    took: float | None = None
    if not args.no_run:
        try:
            fan_rate = parse_rate(args.fanout_deliveries)
            settings = Settings(
                designs=(), pubs=_ints(args.pubs, "--pubs")[0],
                subs=_ints(args.subs, "--subs")[0],
                fanout_subs=_ints(args.fanout_subs, "--fanout-subs"),
                fanout_deliveries=fan_rate or 20_000.0,
                sizes=_ints(args.sizes, "--sizes"), duration=args.duration,
                warmup=args.warmup, budget_s=parse_duration(args.budget, "--budget"),
                sections=_sections(args.sections))
            parse_duration(args.duration, "--duration")
            parse_duration(args.warmup, "--warmup")
        except ValueError as exc:
            print(f"publish_results: error: {exc}", file=sys.stderr)
            return 2
        ready = ready_targets()
        chosen = {name: designs_here(args.targets, Pattern(name), ready)
                  if name in settings.sections else () for name in SECTIONS}
        settings = replace(settings, designs=chosen["broadcast"], task_designs=chosen["tasks"],
                           rpc_designs=chosen["rpc"])
        if not (settings.designs or settings.task_designs or settings.rpc_designs):
            print("publish_results: error: no design can run here", file=sys.stderr)
            return 2
        settings = replace(settings, sizes=tuple(sorted(set(settings.sizes))))
        staging = Path(tempfile.mkdtemp(prefix="published-", suffix=".partial", dir=results_dir))
        t0 = time.monotonic()
        try:
            measure(settings, staging, err)
            _keep_unmeasured(out, staging, settings.sections)
        except KeyboardInterrupt:
            print(f"publish_results: interrupted; {out} is unchanged, what was measured is in "
                  f"{staging}", file=sys.stderr)
            return 130
        took = time.monotonic() - t0
        _swap_in(staging, out)
    try:
        text = readme(out, results_dir, command, took)
    except ResultError as exc:
        print(f"publish_results: error: {exc}", file=sys.stderr)
        return 2
    (results_dir / "README.md").write_text(text, encoding="utf-8")
    err.print(f"wrote {results_dir / 'README.md'}"
              + ("" if took is None else f" (measured in {took / 60:.1f} min)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

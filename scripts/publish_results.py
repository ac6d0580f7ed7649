"""Regenerate results/published/ and results/README.md: the tables that answer "which design
for my broadcast path?".

For every design that can run here (inproc; redis; redis-streams; zmq mesh and proxy; ws with
one server and two bridged by redis and by zmq; any other ready target with its defaults):

1. capacity at 4 x 32, 64 B: the highest rate with p99 <= 10 ms and nothing lost
   (``msgbench capacity``), p50 / p99 at 50 % of it, msgs per CPU-second, the limiting process;
2. fan-out: 1 publisher to 1 ... 1000 subscribers at a fixed total delivery rate: p99 and CPU
   per delivery against subscribers;
3. message size at 4 x 32: capacity in msgs/s and MB/s;
4. the latency-throughput chart of every design at 4 x 32.

Each table names its machine and versions and a takeaway computed from the data. Every step
is a fresh ``msgbench run``; the whole regeneration is bounded by ``--budget``.

    python3 scripts/publish_results.py                 # measure, then write
    python3 scripts/publish_results.py --no-run        # rewrite from the stored files
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from msgbench.analysis.capacity_table import (
    NUMERIC,
    CapacityRow,
    cells,
    load_documents,
    md_table,
)
from msgbench.analysis.curves import design, write_curve_png
from msgbench.analysis.palette import design_of
from msgbench.analysis.units import format_count, format_ns
from msgbench.api.registry import load_target, target_names
from msgbench.orchestration.capacity import Plan, Search
from msgbench.orchestration.sweep import Cell, Runner
from msgbench.results.capacity import CapacityResult, Criteria, Step
from msgbench.results.model import ResultError, RunResult
from msgbench.workload.config import parse_duration, parse_rate

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = (
    ("inproc", "inproc"), ("redis", "redis"), ("redis-streams", "redis-streams"),
    ("zmq", "zmq"), ("zmq", "zmq --zmq-mode proxy"), ("ws", "ws"),
    ("ws", "ws --servers 2 --bridge redis"), ("ws", "ws --servers 2 --bridge zmq"),
)
"""(target name, target with flags) of every published design, in table order."""
SLO = "10ms"
MAX_PUBLISH_DELAY = "5ms"
"""Half the SLO, as ``msgbench capacity`` does by default."""
SHARES = {"capacity": 0.4, "fanout": 0.15, "size": 0.45}
"""How the budget is split between the three questions."""
REFERENCE = "redis"
"""Takeaways compare with this design (the broker most people start from)."""


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


def ready_targets() -> list[str]:
    """Every registered target whose check() passes here."""
    ready = []
    for name in target_names():
        try:
            if load_target(name).check().ok:
                ready.append(name)
        except Exception:  # a broken plugin is simply not published
            continue
    return ready


def designs_here(wanted: str | None) -> tuple[str, ...]:
    """The designs to publish: :data:`DESIGNS` whose target is ready, then any other ready
    target with its defaults; ``wanted`` (comma-separated target names) narrows them."""
    ready = ready_targets()
    out = [flags for name, flags in DESIGNS if name in ready]
    out += [n for n in sorted(ready) if n not in {d[0] for d in DESIGNS}]
    if wanted:
        names = set(wanted.split(","))
        out = [d for d in out if d.split()[0] in names or d in names]
    return tuple(out)


def _search(flags: str, pubs: int, subs: int, size: int, s: Settings, budget_s: float,
            out: Path, start: float, half: bool, precision: float, err: Console) -> None:
    cell = Cell(flags, pubs, subs, size, "1", 1, s.duration, s.warmup)
    criteria = Criteria(slo_p99_ns=int(parse_duration(SLO) * 1e9),
                        max_publish_delay_ns=int(parse_duration(MAX_PUBLISH_DELAY) * 1e9))
    plan = Plan(start_rate=start, precision=precision, budget_s=budget_s, half=half)
    name = f"{flags.replace(' --', '_').replace(' ', '-').replace('--', '')}-{size}B.json"
    err.print(f"[bold]{flags}[/bold] {pubs}x{subs} {size} B: capacity search, "
              f"budget {budget_s:.0f} s", highlight=False)
    def show(st: Step) -> None:
        verdict = "pass" if st.passed else "FAIL " + st.why
        err.print(f"  {st.phase:<6} {format_count(st.offered):>8} msgs/s  {verdict}",
                  highlight=False, soft_wrap=True)

    result = Search(cell, criteria, plan, out / name, Runner(), on_step=show).run()
    err.print(f"  -> {format_count(result.capacity_offered or 0)} msgs/s ({result.stopped})",
              highlight=False)


def measure(s: Settings, staging: Path, err: Console) -> None:
    """Run all three questions into ``staging`` (capacity/, fanout/, size/)."""
    n = max(1, len(s.designs))
    cap_dir, fan_dir, size_dir = staging / "capacity", staging / "fanout", staging / "size"
    for flags in s.designs:
        _search(flags, s.pubs, s.subs, 64, s, s.budget_s * SHARES["capacity"] / n, cap_dir,
                1000.0, True, 0.1, err)
    per_run = s.budget_s * SHARES["fanout"] / max(1, n * len(s.fanout_subs))
    fanout_ends = time.monotonic() + s.budget_s * SHARES["fanout"]
    runner = Runner()
    for flags in s.designs:
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
    _, caps = load_documents([str(cap_dir)]) if cap_dir.exists() else ([], [])
    found = {c.workload["target"]: c.capacity_rate for _, c in caps}
    sizes = [z for z in s.sizes if z != 64]
    for flags in s.designs:
        start = found.get(flags) or 1000.0  # bigger messages rarely go faster than 64 B
        for size in sizes:
            _search(flags, s.pubs, s.subs, size, s,
                    s.budget_s * SHARES["size"] / max(1, n * len(sizes)), size_dir, start,
                    False, 0.25, err)


def machine(docs: list[RunResult]) -> list[str]:
    """Markdown lines describing the machine and software, from the environment block."""
    if not docs:
        return ["(no results)"]
    env = docs[0].environment
    libs = env.get("libraries") or {}
    git = env.get("git") or {}
    lines = [
        f"- CPU: {env.get('cpu_model', '?')}, {env.get('cores', '?')} cores usable "
        f"({env.get('cores_total', '?')} in all), {env.get('machine', '')}",
        f"- kernel: {env.get('kernel', '?')}",
        f"- Python {env.get('python', '?')} ({env.get('python_implementation', '?')})",
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(libs.items()) if v),
        f"- msgbench {env.get('msgbench', '?')}, git {git.get('revision') or 'unknown'}"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
    ]
    servers = {r.config["target"]: r.target for r in docs if r.target}
    for name, info in sorted(servers.items()):
        shown = {k: v for k, v in info.items() if k != "name"}
        if shown:
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return lines


def machine_line(envs: list[dict[str, object]]) -> str:
    """One line naming the machine and versions a table comes from."""
    if not envs:
        return "_Machine: unknown._"
    env = envs[0]
    git = env.get("git")
    rev = git.get("revision", "unknown") if isinstance(git, dict) else "unknown"
    return (f"_Measured on {env.get('cpu_model', '?')} ({env.get('cores', '?')} cores), "
            f"Python {env.get('python', '?')}, msgbench {env.get('msgbench', '?')} "
            f"(git {str(rev)[:12]}); versions in [Machine](#machine)._")


def capacity_takeaway(caps: list[CapacityResult]) -> str:
    """``highest 4 x 32 capacity: zmq (52 k msgs/s), 3.1 times redis; ...``, from the data."""
    found = [c for c in caps if c.capacity_offered]
    if not found:
        return "No design sustained any rate within the SLO here."
    best = max(found, key=lambda c: c.capacity_offered or 0)
    w = best.workload
    text = (f"Highest {w['pubs']} x {w['subs']} capacity: **{design(best)}** "
            f"({format_count(best.capacity_offered or 0)} msgs/s)")
    ref = next((c for c in found if design(c) == REFERENCE), None)
    if ref is not None and ref is not best and ref.capacity_offered:
        text += f", {(best.capacity_offered or 0) / ref.capacity_offered:.1f} times {REFERENCE}"
    cheap = [(c, at.msgs_per_cpu_s) for c in found if (at := c.step_at_capacity())
             and at.msgs_per_cpu_s]
    if cheap:
        c, rate = max(cheap, key=lambda x: x[1] or 0)
        text += f". Cheapest per delivery: **{design(c)}** ({format_count(rate or 0)} msgs/CPU-s)"
    return text + "."


def fanout_section(runs: list[RunResult], subs_order: list[int]) -> list[str]:
    """The fan-out table (rows: design; columns: p99 and CPU per delivery per subscriber
    count) and its takeaway."""
    table: dict[str, dict[int, RunResult]] = {}
    for r in runs:
        table.setdefault(design_of(r.config), {})[int(r.config["subs"])] = r
    headers = ["design", *[f"p99 1x{n}" for n in subs_order],
               *[f"CPU/delivery 1x{n}" for n in subs_order]]
    body = []
    for name, by_subs in table.items():
        def cell(n: int, cpu: bool, by: dict[int, RunResult] = by_subs) -> str:
            r = by.get(n)
            if r is None:
                return "-"
            mark = "" if r.status == "ok" else f" ({r.status})"
            s = r.summary
            if cpu:
                return (format_ns(1e9 / s.msgs_per_cpu_s) if s.msgs_per_cpu_s else "-") + mark
            return (format_ns(s.latency_ns["p99"]) if s.latency_ns.get("count") else "-") + mark
        body.append([name, *[cell(n, False) for n in subs_order],
                     *[cell(n, True) for n in subs_order]])
    numeric = frozenset(range(1, len(headers)))
    top = max(subs_order) if subs_order else 0
    ok = [(d, b[top]) for d, b in table.items() if top in b and b[top].status == "ok"]
    if ok:
        best = min(ok, key=lambda x: x[1].summary.latency_ns["p99"])
        cheap = max(ok, key=lambda x: x[1].summary.msgs_per_cpu_s)
        take = (f"At 1 x {top}: lowest p99 **{best[0]}** "
                f"({format_ns(best[1].summary.latency_ns['p99'])}), cheapest per delivery "
                f"**{cheap[0]}** ({format_ns(1e9 / cheap[1].summary.msgs_per_cpu_s)} CPU).")
    else:
        take = f"No design delivered 1 x {top} cleanly here."
    return [take, "", md_table(headers, numeric, body).rstrip()]


def size_section(caps: list[CapacityResult]) -> list[str]:
    """Capacity in msgs/s and MB/s per design and size, and its takeaway."""
    sizes = sorted({int(c.workload["size"]) for c in caps})
    by: dict[str, dict[int, CapacityResult]] = {}
    for c in caps:
        by.setdefault(design(c), {})[int(c.workload["size"])] = c
    headers = ["design", *[f"{z} B msgs/s" for z in sizes], *[f"{z} B MB/s" for z in sizes]]
    body = []
    for name, row in by.items():
        def msgs(z: int, r: dict[int, CapacityResult] = row) -> str:
            c = r.get(z)
            return "-" if c is None or not c.capacity_offered else format_count(c.capacity_offered)

        def mb(z: int, r: dict[int, CapacityResult] = row) -> str:
            c = r.get(z)
            if c is None or not c.capacity_offered:
                return "-"
            return f"{c.capacity_offered * z * int(c.workload['subs']) / 1e6:.1f}"
        body.append([name, *[msgs(z) for z in sizes], *[mb(z) for z in sizes]])
    big = sizes[-1] if sizes else 0
    at_big = [c for c in caps if int(c.workload["size"]) == big and c.capacity_offered]
    if at_big:
        best = max(at_big, key=lambda c: c.capacity_offered or 0)
        mbps = (best.capacity_offered or 0) * big * int(best.workload["subs"]) / 1e6
        take = (f"At {big} B: highest capacity **{design(best)}** "
                f"({format_count(best.capacity_offered or 0)} msgs/s, {mbps:.0f} MB/s delivered).")
    else:
        take = f"No design sustained {big} B messages within the SLO here."
    note = ("MB/s counts delivered bytes (every subscriber's copy). msgbench's smallest "
            "message is its 32-byte header, so sizes start at 32 B, not 16 B.")
    return [take, "", md_table(headers, frozenset(range(1, len(headers))), body).rstrip(),
            "", note]


def readme(out: Path, results_dir: Path, command: str, took_s: float | None) -> str:
    """The text of results/README.md, from the files in ``out``."""
    def docs(sub: str) -> tuple[list[tuple[Path, RunResult]], list[tuple[Path, CapacityResult]]]:
        return load_documents([str(out / sub)]) if (out / sub).is_dir() else ([], [])

    _, caps = docs("capacity")
    fan_runs, _ = docs("fanout")
    _, size_caps = docs("size")
    cap_list = [c for _, c in caps]
    envs = [c.environment for c in cap_list if c.environment] + [
        r.environment for _, r in fan_runs]
    chart = write_curve_png([(str(p), c) for p, c in caps], out / "curves.png") if caps \
        else None
    subs_order = sorted({int(r.config["subs"]) for _, r in fan_runs})
    w = cap_list[0].workload if cap_list else {"pubs": 4, "subs": 32}
    fan_rate = {r.summary.counters.expected / max(r.summary.duration_s, 1e-9)
                for _, r in fan_runs}
    took = "" if took_s is None else f" Measuring took {took_s / 60:.0f} min."
    parts = [
        "<!-- Generated by scripts/publish_results.py. Never hand-edited: "
        "rerun the command below instead. -->",
        "# Published results: which design for my broadcast path?", "",
        "**Generated file, never hand-edited.** Regenerate it (and everything in "
        "`published/`) with:", "", "```sh", command, "```", "",
        f"Every figure comes from a fresh `msgbench run` of a few seconds.{took} Capacity is "
        f"the highest offered rate at which nothing is lost, no subscriber is disconnected, the "
        f"publishers keep their schedule (publish delay p99 <= {MAX_PUBLISH_DELAY}) and p99 "
        f"<= {SLO} (latency from the intended send time), found by `msgbench capacity` "
        "(ramp, then bisect). `msgs/CPU-s` counts deliveries per CPU-second of every process "
        "involved, brokers included. `>=` marks a lower bound (the search ran out of budget).",
        "",
        f"## Capacity at {w['pubs']} x {w['subs']}, 64 B", "",
        capacity_takeaway(cap_list), "",
        md_table(("design", "pubs x subs", "size", "capacity msgs/s", "deliveries/s", "MB/s",
                  "msgs/CPU-s", "p50 at 50 %", "p99 at 50 %", "limit", "search"), NUMERIC,
                 [cells(CapacityRow.from_result(p, c)) for p, c in caps]).rstrip(), "",
        machine_line(envs), "",
    ]
    if chart is not None:
        parts += [f"## Latency against throughput, {w['pubs']} x {w['subs']}", "",
                  f"![latency-throughput curves]({chart.relative_to(results_dir).as_posix()})",
                  "", "p50 and p99 against delivered rate for every step of every search; "
                  "crosses mark steps that failed, the dashed line is the SLO.", ""]
    if fan_runs:
        rate = format_count(sorted(fan_rate)[len(fan_rate) // 2]) if fan_rate else "?"
        parts += [f"## Fan-out: 1 publisher, {rate} deliveries/s in total", "",
                  *fanout_section([r for _, r in fan_runs], subs_order), "",
                  machine_line([r.environment for _, r in fan_runs]), ""]
    if size_caps or caps:
        parts += [f"## Message size at {w['pubs']} x {w['subs']}", "",
                  *size_section(cap_list + [c for _, c in size_caps]), "",
                  machine_line(envs), ""]
    parts += ["## Machine", "", *machine([r for _, r in fan_runs]), ""]
    return "\n".join(parts)


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
    ap.add_argument("--budget", default="25m", help="wall-time bound of the measuring [25m]")
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
                designs=designs_here(args.targets), pubs=_ints(args.pubs, "--pubs")[0],
                subs=_ints(args.subs, "--subs")[0],
                fanout_subs=_ints(args.fanout_subs, "--fanout-subs"),
                fanout_deliveries=fan_rate or 20_000.0,
                sizes=_ints(args.sizes, "--sizes"), duration=args.duration,
                warmup=args.warmup, budget_s=parse_duration(args.budget, "--budget"))
            parse_duration(args.duration, "--duration")
            parse_duration(args.warmup, "--warmup")
        except ValueError as exc:
            print(f"publish_results: error: {exc}", file=sys.stderr)
            return 2
        if not settings.designs:
            print("publish_results: error: no design can run here", file=sys.stderr)
            return 2
        settings = replace(settings, sizes=tuple(sorted(set(settings.sizes))))
        staging = Path(tempfile.mkdtemp(prefix="published-", suffix=".partial", dir=results_dir))
        t0 = time.monotonic()
        try:
            measure(settings, staging, err)
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

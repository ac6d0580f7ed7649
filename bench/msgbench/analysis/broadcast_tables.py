"""The published broadcast sections and the machine block: tables and takeaways from
stored results, for results/README.md (``scripts/publish_results.py`` measures them).

Capacity at P x S, fan-out against subscribers, capacity against message size; each table
has a one-line takeaway computed from the data and a line naming the machine it ran on.
"""

from __future__ import annotations

from pathlib import Path

from msgbench.analysis.capacity_table import (
    HEADERS,
    NUMERIC,
    CapacityRow,
    cells,
    load_documents,
    md_table,
)
from msgbench.analysis.curves import design, write_curve_png
from msgbench.analysis.palette import design_of
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.capacity import CapacityResult
from msgbench.results.model import RunResult

REFERENCE = "redis"
"""Takeaways compare with this design (the broker most people start from)."""


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


def broadcast_parts(out: Path, results_dir: Path) -> tuple[list[str], list[RunResult]]:
    """The broadcast sections of results/README.md from ``out`` (capacity/, fanout/, size/;
    writes ``out/curves.png``), and the fan-out runs they show."""
    def docs(sub: str) -> tuple[list[tuple[Path, RunResult]], list[tuple[Path, CapacityResult]]]:
        return load_documents([str(out / sub)]) if any((out / sub).glob("*.json")) else ([], [])

    _, caps = docs("capacity")
    fan_runs, _ = docs("fanout")
    _, size_caps = docs("size")
    if not caps and not fan_runs and not size_caps:
        return [], []
    cap_list = [c for _, c in caps]
    envs = [c.environment for c in cap_list if c.environment] + [
        r.environment for _, r in fan_runs]
    chart = write_curve_png([(str(p), c) for p, c in caps], out / "curves.png") if caps \
        else None
    subs_order = sorted({int(r.config["subs"]) for _, r in fan_runs})
    w = cap_list[0].workload if cap_list else {"pubs": 4, "subs": 32}
    fan_rate = {r.summary.counters.expected / max(r.summary.duration_s, 1e-9)
                for _, r in fan_runs}
    parts = [
        f"## Capacity at {w['pubs']} x {w['subs']}, 64 B", "",
        capacity_takeaway(cap_list), "",
        md_table(HEADERS, NUMERIC, [cells(CapacityRow.from_result(p, c)) for p, c in caps])
        .rstrip(), "", machine_line(envs), "",
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
    return parts, [r for _, r in fan_runs]

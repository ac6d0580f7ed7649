"""Does the regression gate keep its promises on this machine? A/A and injected slowdowns.

Three parts, each labelled in the output:

1. **measured**: real paired blocks (two fresh ``msgbench run`` processes each, order by
   coin flip, exactly as ``msgbench ci`` runs them) for A/A and for each injected
   slowdown, the levels taking turns block by block (fixed work, calibrated as a share
   of the workload's own CPU-ns per message). Printed: the pair-to-pair variation (SD
   of the block log ratios), the realised slowdown, the share of contended blocks, the
   time per block, and the verdict of the sequential gate on each measured stream with
   the CI time it took.
2. **resampled from measured blocks**: many gate experiments drawn (with replacement)
   from the measured blocks of each level; A/A blocks get random signs, which is what
   "no change" means under the coin flip. False-alarm rate and power with 95 %
   Clopper-Pearson bounds, and the mean CI time per verdict.
3. **simulated from the measured variation**: normal block log ratios with the A/A
   SD; power at a range of slowdowns and the smallest caught with power >= 0.9.

    python3 benchmarks/validate_gate.py                      # 30 blocks per level
    python3 benchmarks/validate_gate.py --blocks 10 --levels 0,5,20 --experiments 400
    python3 benchmarks/validate_gate.py --from results/validate-X/blocks.json

Exit 0 always once it has printed (the figures are the result), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from msgbench.analysis.gate import Limits
from msgbench.analysis.stats_tests import DEFAULT_ALPHA, DEFAULT_LOOKS, REGRESSION, sequential
from msgbench.orchestration.ci import ContentionProbe, Plan, calibrate, run_block
from msgbench.orchestration.sweep import Cell, Runner
from msgbench.run.inject import WORK_ENV, units_for

LIMIT = 0.05
POWER_GOAL = 0.9
SIM_EFFECTS = (0.02, 0.03, 0.05, 0.075, 0.10, 0.125, 0.15, 0.175, 0.20, 0.30, 0.50)
RESAMPLES = 999
"""Sign-flip resamples per test inside the many simulated experiments (valid, faster)."""


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=30, help="measured blocks per level")
    p.add_argument("--levels", default="0,3,5,10", help="injected slowdowns in percent (0: A/A)")
    p.add_argument("--experiments", type=int, default=1000, help="resampled experiments")
    p.add_argument("--subs", type=int, default=8)
    p.add_argument("--rate", default="max")
    p.add_argument("-d", "--duration", default="1s")
    p.add_argument("-w", "--warmup", default="300ms")
    p.add_argument("--max-redo", type=int, default=0,
                   help="redo contended blocks (ci's default is 2; 0 keeps every block, "
                   "and counts the contended ones)")
    p.add_argument("--looks", default=",".join(map(str, DEFAULT_LOOKS)))
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="directory for runs [results/validate-<time>]")
    p.add_argument("--from", dest="source", default=None,
                   help="blocks.json of an earlier run: skip measuring")
    a = p.parse_args()
    try:
        a.levels = [float(x) / 100 for x in a.levels.split(",")]
        a.looks = sorted({int(x) for x in a.looks.split(",")})
    except ValueError:
        p.error("--levels and --looks take comma-separated numbers")
    if a.blocks < 2 or a.experiments < 1 or 0.0 not in a.levels:
        p.error("need --blocks >= 2, --experiments >= 1 and level 0 (the A/A)")
    return a


def measure(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run the blocks of every level; returns what blocks.json holds."""
    cell = Cell("inproc", 1, a.subs, 64, a.rate, 1, a.duration, a.warmup)
    base = Runner()
    costs, unit = calibrate([cell], base, out)
    cost = costs[0]
    print(f"calibration: {cost:.1f} CPU-ns/msg (median of 3 runs), work unit {unit:.1f} ns",
          file=sys.stderr)
    plan = Plan([cell], out, Limits(), max_redo=a.max_redo)
    rng = np.random.default_rng(a.seed)
    probe = ContentionProbe()
    levels: dict[str, Any] = {}
    runners = {}
    for level in a.levels:
        env = {WORK_ENV: f"{units_for(level, cost, unit):.6g}"} if level else {}
        runners[level] = Runner(env=env)
        levels[f"{level:g}"] = {"level": level, "units_per_msg": env.get(WORK_ENV, "0"),
                                "blocks": []}
    # levels take turns block by block, so each sees the same states of the machine
    for k in range(a.blocks):
        for level in a.levels:
            t0 = time.monotonic()
            block, ob, on = run_block(k, replace(cell, trial=k), int(rng.integers(2)), base,
                                      runners[level],
                                      replace(plan, out=out / f"level-{level:.0%}"), probe)
            wall = time.monotonic() - t0
            if block.base.cpu_ns_per_msg is None or block.new.cpu_ns_per_msg is None:
                print(f"level {level:.0%} block {k}: a run failed ({ob.reason or on.reason})",
                      file=sys.stderr)
                continue
            rows: list[dict[str, Any]] = levels[f"{level:g}"]["blocks"]
            rows.append({"d": math.log(block.new.cpu_ns_per_msg / block.base.cpu_ns_per_msg),
                         "base": block.base.cpu_ns_per_msg, "new": block.new.cpu_ns_per_msg,
                         "first": block.first, "wall_s": wall, "redone": block.redone,
                         "contention": [block.base.contention, block.new.contention]})
            print(f"block {k + 1}/{a.blocks} level +{level:.0%}: ratio "
                  f"{math.exp(rows[-1]['d']):.3f} ({wall:.1f} s)", file=sys.stderr)
    return {"cost_ns_per_msg": cost, "unit_ns": unit, "duration": a.duration,
            "warmup": a.warmup, "subs": a.subs, "rate": a.rate, "levels": levels}


def _bounds(k: int, n: int) -> str:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def _sd(d: np.ndarray) -> float:
    return float(np.std(d, ddof=1)) if d.size > 1 else math.nan


def report(data: dict[str, Any], a: argparse.Namespace) -> None:
    """Print the three parts."""
    aa = np.array([b["d"] for b in data["levels"]["0"]["blocks"]])
    walls = [b["wall_s"] for lv in data["levels"].values() for b in lv["blocks"]]
    block_s = float(np.mean(walls)) if walls else math.nan
    sigma = _sd(aa)
    mad = float(stats.median_abs_deviation(aa, scale="normal")) if aa.size else math.nan
    print(f"\n== measured: inproc 1x{data['subs']} 64B rate {data['rate']}, "
          f"{data['duration']} + {data['warmup']} warm-up per run; "
          f"{data['cost_ns_per_msg']:.1f} CPU-ns/msg at calibration")
    print(f"pair-to-pair variation (A/A, {aa.size} blocks): SD of log ratio {sigma:.3f} "
          f"(robust MAD-SD {mad:.3f}); {block_s:.1f} s of CI time per block")
    print(f"{'level':>6} {'blocks':>6} {'realised':>9} {'SD':>6} {'contended':>9} "
          f"{'gate verdict':>13} {'at block':>8} {'CI time':>8}")
    for lv in data["levels"].values():
        d = np.array([b["d"] for b in lv["blocks"]])
        cont = sum(max(c for c in b["contention"] if c is not None) > 0.10
                   for b in lv["blocks"] if any(c is not None for c in b["contention"]))
        v, n, _ = sequential(d, LIMIT, [x for x in a.looks if x <= d.size] or [d.size],
                             a.alpha)
        t = sum(b["wall_s"] for b in lv["blocks"][:n])
        print(f"{lv['level']:>+6.0%} {d.size:>6} {math.expm1(float(np.median(d))):>+9.1%} "
              f"{_sd(d):>6.3f} {cont:>9} {v:>13} {n:>8} {t:>7.0f}s")
    print(f"\n== resampled from measured blocks: {a.experiments} experiments per level, "
          f"looks {a.looks}, alpha {a.alpha}, limit +{LIMIT:.0%}")
    print(f"{'level':>6} {'P(REGRESSION) [95% bounds]':>30} {'P(PASS)':>8} "
          f"{'mean blocks':>11} {'mean CI time':>12}")
    rng = np.random.default_rng(a.seed)
    cap = max(a.looks)
    for lv in data["levels"].values():
        d = np.array([b["d"] for b in lv["blocks"]])
        if d.size < 2:
            continue
        hits = passes = used = 0
        for _ in range(a.experiments):
            x = rng.choice(d, cap)
            if lv["level"] == 0:
                x = np.abs(x) * rng.choice((-1.0, 1.0), cap)
            v, n, _ = sequential(x, LIMIT, a.looks, a.alpha, resamples=RESAMPLES)
            hits += v == REGRESSION
            passes += v == "PASS"
            used += n
        what = "false alarms" if lv["level"] == 0 else "power"
        print(f"{lv['level']:>+6.0%} {_bounds(hits, a.experiments):>30} "
              f"{passes / a.experiments:>8.3f} {used / a.experiments:>11.1f} "
              f"{used / a.experiments * block_s:>11.0f}s  ({what})")
    print(f"\n== simulated from the measured variation (normal, SD {sigma:.3f}): "
          f"{a.experiments // 2} experiments per effect")
    smallest = None
    for e in SIM_EFFECTS:
        hits = sum(sequential(rng.normal(math.log1p(e), sigma, cap), LIMIT, a.looks, a.alpha,
                              resamples=RESAMPLES)[0] == REGRESSION
                   for _ in range(a.experiments // 2))
        power = hits / (a.experiments // 2)
        print(f"  +{e:.1%}: power {_bounds(hits, a.experiments // 2)}")
        if smallest is None and power >= POWER_GOAL:
            smallest = e
    print(f"smallest slowdown caught with power >= {POWER_GOAL}: "
          + (f"+{smallest:.1%}" if smallest else f"none up to +{SIM_EFFECTS[-1]:.0%}")
          + f" (simulated at SD {sigma:.3f}, {cap} blocks = {cap * block_s:.0f} s of CI time)")


def main() -> int:
    a = _args()
    if a.source:
        try:
            data = json.loads(Path(a.source).read_text())
        except (OSError, ValueError) as exc:
            print(f"validate_gate: cannot read {a.source}: {exc}", file=sys.stderr)
            return 2
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path(a.out or f"results/validate-{stamp}")
        data = measure(a, out)
        (out / "blocks.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"blocks in {out / 'blocks.json'}", file=sys.stderr)
    report(data, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())

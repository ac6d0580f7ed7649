"""Turn what a run measured into its :class:`RunResult`.

The coordinator walks the phases; when they end (or fail) it hands over plain
data (:class:`RunFacts`) with the aggregator and the cost meter, and this
module does the rest: the window's CPU, the summary, the defects, the named
limits, the status and the environment. Nothing here knows workers or
processes of the run layer: results never import run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from msgbench.kit.urls import mask_url
from msgbench.results import environment
from msgbench.results.aggregate import Aggregator
from msgbench.results.costs import CostMeter, ProcessCost
from msgbench.results.limits import name_limits
from msgbench.results.model import STATUS_DEGRADED, STATUS_FAILED, STATUS_OK, RunResult
from msgbench.workload.config import RunConfig

NS = 1_000_000_000
NO_WINDOW = "the run ended before its measured window: no figures"
"""The reason a run that never reached its measured window adds."""


@dataclass(frozen=True)
class RunFacts:
    """What the coordinator knows at the end of a run, as plain data."""

    started_at: str
    """When the run began (ISO 8601, seconds)."""
    measure_started_at: str
    """When the measured window began (ISO 8601, milliseconds; empty if it never did)."""
    measure_start_ns: int
    measure_end_ns: int
    """When the measured window really ended (monotonic ns; 0 while it has not)."""
    killed_at_ns: int
    """When ``--kill-worker`` killed its worker (monotonic ns; 0: nobody was killed)."""
    failed: bool
    reasons: tuple[str, ...]
    target: dict[str, Any]
    """The target's name and what its endpoint says about itself."""
    worker_kinds: dict[str, str]
    """``worker N`` -> ``publisher``, ``subscriber`` or ``both``: what it holds."""
    legs: tuple[str, ...]
    """Names of the extra histograms summarised under ``legs`` (rpc legs, task times)."""


def without_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """The config with passwords in URL-valued options masked: results get shared."""
    options = {
        k: mask_url(v) if isinstance(v, str) else v
        for k, v in config.get("target_options", {}).items()
    }
    return {**config, "target_options": options}


def assemble(config: RunConfig, agg: Aggregator, meter: CostMeter, facts: RunFacts) -> RunResult:
    """The run's result: status ``failed`` if ``facts.failed``, ``degraded`` if anything is
    to be said (a reason, a defect of the topology, no measured window), else ``ok``.

    A run without a measured window gets zero CPU per process and a reason saying so.
    """
    measured_ns = facts.measure_end_ns - facts.measure_start_ns if facts.measure_end_ns else 0
    costs = meter.costs()
    reasons = list(facts.reasons)
    if not measured_ns:
        # nothing was measured: no process spent anything "in the window"
        costs = [dataclasses.replace(c, cpu_s=0.0) for c in costs]
        reasons.append(NO_WINDOW)
    cpu_window = sum(c.cpu_s for c in costs)
    summary = agg.summary(cpu_window, measured_ns / NS)
    reasons += agg.topology.defects(summary.counters)
    limits = _limits(config, meter, costs, summary.publish_delay_ns, facts.worker_kinds)
    if facts.failed:
        status = STATUS_FAILED
    elif reasons:
        status = STATUS_DEGRADED
    else:
        status = STATUS_OK
    return RunResult(
        config=without_secrets(config.to_json()),
        environment=environment.collect(),
        status=status,
        reasons=reasons,
        partial=facts.failed,
        started_at=facts.started_at,
        summary=summary,
        processes=[c.to_json() for c in costs],
        series=agg.series(),
        histograms={
            "latency": agg.latency.encode(),
            "latency_uncorrected": agg.latency_raw.encode(),
            "publish_delay": agg.publish_delay.encode(),
            **{name: h.encode() for name, h in sorted(agg.extra.items())},
        },
        subscribers=[agg.subscribers[k] for k in sorted(agg.subscribers)],
        groups=agg.groups(measured_ns / NS, facts.killed_at_ns),
        legs={name: agg.extra[name].summary().to_json()
              for name in facts.legs if name in agg.extra},
        target=facts.target,
        latency_mode="open-loop" if config.rate is not None else "closed-loop",
        measure_started_at=facts.measure_started_at,
        limits=limits,
        cpu_pressure=meter.pressure(),
    )


def _limits(config: RunConfig, meter: CostMeter, costs: list[ProcessCost],
            delay: dict[str, Any], kinds: dict[str, str]) -> list[str]:
    """The run's limits (:func:`name_limits`), workers told apart by what they hold."""
    open_loop = config.rate is not None and delay.get("count")
    return name_limits(
        [c.to_json() for c in costs],
        meter.window_s(),
        float(delay["p99"]) if open_loop else None,
        meter.pressure(),
        kinds,
    )

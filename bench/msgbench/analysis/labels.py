"""Names for runs and workloads, as tables, plots and the gate print them."""

from __future__ import annotations

import json
from typing import Any

from msgbench.analysis.units import format_count, format_ns

WORKLOAD_FIELDS = (
    "target", "target_options", "pubs", "subs", "size", "rate", "topics", "batch", "sub_delay_s",
)
"""Config fields that define a workload: runs that differ in one are not comparable. The
pattern is not one of them: the gate refuses to compare runs of different patterns."""
PATTERN_FIELDS = ("work", "slow_worker", "kill_worker_s", "inflight", "timeout_s")
"""Config fields that define a task or request/reply workload too (service time, a slow or
killed worker, calls in flight, the reply timeout); broadcast runs never set them, so their
workload key stays what it was before these fields existed."""


def format_rate(rate: float | None) -> str:
    """A per-publisher rate as configured: ``max`` or ``20k/s``."""
    return "max" if rate is None else f"{format_count(rate).replace(' ', '')}/s"


def _option_defaults(target: str) -> dict[str, Any]:
    try:
        from msgbench.api.registry import load_target_class

        return {o.key: o.default for o in load_target_class(target).options}
    except Exception:  # a target that is not installed here: show every option
        return {}


def variant(config: dict[str, Any]) -> str:
    """The target options and run settings that set this run apart, compactly.

    Options equal to the target's declared default, and empty ones, are left
    out; a ``zmq_`` style prefix equal to the target name is dropped.
    """
    target = str(config.get("target", ""))
    defaults = _option_defaults(target)
    prefix = target.replace("-", "_") + "_"
    parts: list[str] = []
    if config.get("pattern", "broadcast") != "broadcast":
        parts.append(str(config["pattern"]))
    for key, value in sorted((config.get("target_options") or {}).items()):
        if value in (None, False, "") or (key in defaults and defaults[key] == value):
            continue
        name = key[len(prefix) :] if key.startswith(prefix) else key
        parts.append(name if value is True else f"{name}={value}")
    if config.get("topics", 1) != 1:
        parts.append(f"topics={config['topics']}")
    if config.get("sub_delay_s"):
        parts.append(f"sub-delay={format_ns(config['sub_delay_s'] * 1e9)}")
    if config.get("batch"):
        parts.append(f"batch={config['batch']}")
    for key, name in (("work", "work"), ("slow_worker", "slow-worker"),
                      ("kill_worker_s", "kill-worker"), ("inflight", "inflight")):
        value = config.get(key)
        if value:
            parts.append(f"{name}={value:g}s" if key == "kill_worker_s" else f"{name}={value}")
    return " ".join(parts)


def workload_key(cfg: dict[str, Any]) -> str:
    """Identity of a workload: the :data:`WORKLOAD_FIELDS` of a config, as canonical JSON."""
    key = {f: cfg.get(f) for f in WORKLOAD_FIELDS}
    if (cfg.get("pattern") or "broadcast") != "broadcast":
        key.update({f: cfg.get(f) or None for f in PATTERN_FIELDS})
    return json.dumps(key, sort_keys=True, default=str)


def workload_label(cfg: dict[str, Any]) -> str:
    """``inproc 1x8 64B 20k/s`` (+ variant)."""
    v = variant(cfg)
    return (f"{cfg['target']}{' ' + v if v else ''} {cfg['pubs']}x{cfg['subs']} "
            f"{cfg['size']}B {format_rate(cfg['rate'])}")

"""The result file's format over time, and loaders that bring old files up to date.

Every document names its schema (:data:`SCHEMA`) and version. :data:`HISTORY`
says what each version changed and when; :func:`upgrade` turns a document of
any listed version into the current one, step by step, so files published by
an older msgbench keep rendering, comparing and gating. A document from a newer
msgbench than this one is refused with a line that says so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCHEMA = "msgbench.run"
SCHEMA_VERSION = 4


class ResultError(Exception):
    """A result file cannot be read; the message is one line for the user."""


@dataclass(frozen=True)
class Change:
    """One version of the format: when it came and what it changed."""

    version: int
    date: str
    what: str
    fields: str = ""
    """The fingerprint of the version's fields (:func:`msgbench.results.fingerprint.
    fingerprint`), recorded from version 4 on: a test compares the current version's with
    the code's, so no field changes without a new version."""


HISTORY = (
    Change(1, "2026-11-24", "First format: config, environment, status and reasons, summary, "
           "per-process costs, per-second series, encoded HdrHistograms, per-subscriber "
           "totals."),
    Change(2, "2026-12-02", "Delivery semantics: config.pattern (broadcast, tasks, rpc); the "
           "summary's counters are one set (Counters), adding redelivered, orphaned, late, "
           "timeouts and orphan_replies; per-subscriber records carry the same counters "
           "(disconnected -> disconnected_subscribers) and, for a shared group, the group; "
           "groups (tasks: shares, fairness, utilisation, recovery), legs (rpc: request leg, "
           "service, reply leg), limits (the run's first limit) and cpu_pressure; per process "
           "cpu_wait_s, core_share, nivcsw, busiest_thread_share; summary.duration_s is the "
           "time actually measured; unknown keys are tolerated everywhere."),
    Change(3, "2026-12-02", "Tasks: histograms and legs task_queue_wait (+ _uncorrected) "
           "and task_service; series queue_waiting / queue_unacked (null: the design cannot "
           "tell); groups idle_with_backlog_s (per member) and idle_with_backlog_total_s. "
           "Version 2 files read as they are (the new fields absent)."),
    Change(4, "2026-12-07", "Counters errors, injected_units and injected_cpu_ns, which "
           "version-3 files written after 2026-12-02 already carried, belong to this version; "
           "the records of subscribers, groups and legs are declared "
           "(msgbench.results.records) and checked when read; config.stall_timeout_s. "
           "Version 3 files read as they are (absent counters are 0).",
           fields="5be6e250a7380e89"),
)


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    doc["config"].setdefault("pattern", "broadcast")
    for s in doc.get("subscribers") or []:
        if isinstance(s, dict) and "disconnected" in s:
            s["disconnected_subscribers"] = s.pop("disconnected")
    doc["schema_version"] = 2
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    doc["schema_version"] = 3  # only fields were added, each optional
    return doc


def _v3_to_v4(doc: dict[str, Any]) -> dict[str, Any]:
    doc["schema_version"] = 4  # counters added (0 when absent) and records declared
    return doc


_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
"""``_STEPS[v]`` turns a version ``v`` document into version ``v + 1``."""


def upgrade(data: Any) -> dict[str, Any]:
    """A copy of ``data`` in the current version; raises :class:`ResultError` when it is not
    a msgbench result or its version is unknown (for instance newer than this msgbench)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultError("not a msgbench run result")
    version = data.get("schema_version")
    known = [c.version for c in HISTORY]
    if not isinstance(version, int) or isinstance(version, bool) or version not in known:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "; it was written by a newer msgbench" if newer else ""
        raise ResultError(f"result schema version {version!r} is not supported (this msgbench "
                          f"reads versions {known[0]} to {SCHEMA_VERSION}{hint})")
    doc = copy.deepcopy(data)
    if not isinstance(doc.get("config"), dict):
        raise ResultError("malformed result document: config is not an object")
    while doc["schema_version"] < SCHEMA_VERSION:
        doc = _STEPS[doc["schema_version"]](doc)
    return doc

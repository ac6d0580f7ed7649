"""``msgbench sweep``: run a matrix of cells, write every result, print one table.

Exit 0 when every cell ran (ok or degraded), 1 when any failed or could not
run (the sweep still goes on to the end), 2 for bad input.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from msgbench.analysis.report import FORMATS, render
from msgbench.cli.report_cmd import fail
from msgbench.orchestration.sweep import (
    Cell,
    Outcome,
    Runner,
    WorkloadError,
    expand,
    read_workload,
    split_list,
)

EXIT_FAILED = 1


@dataclass(frozen=True)
class Job:
    """One cell to run with a given runner into a given directory."""

    cell: Cell
    runner: Runner
    out_dir: Path
    tag: str = ""
    """Shown before the cell in progress lines (``base``, ``new``)."""


def run_jobs(jobs: Sequence[Job], progress_console: Console) -> list[Outcome]:
    """Run ``jobs`` in order with a progress bar on ``progress_console``."""
    outcomes: list[Outcome] = []
    # SIGTERM (a CI runner cancelling the job) must stop the current run too, which lives
    # in its own session: turn it into the same path as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run_jobs(jobs, progress_console, outcomes)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_jobs(jobs: Sequence[Job], progress_console: Console, outcomes: list[Outcome]
              ) -> list[Outcome]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=progress_console, transient=False) as bar:
        task = bar.add_task("sweep", total=len(jobs))
        for job in jobs:
            label = f"{job.tag} {job.cell.label()}".strip()
            bar.update(task, description=label)
            outcome = job.runner.run(job.cell, job.out_dir)
            outcomes.append(outcome)
            if not outcome.ran:
                bar.console.print(f"[red]{label}: {outcome.reason}[/red]", highlight=False)
            bar.advance(task)
    return outcomes


def _matrix_from(params: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if params["workload"]:
        spec.update(read_workload(Path(params["workload"])))
    for key in ("target", "pubs", "subs", "size", "rate", "topics"):
        if params[key] is not None:
            spec[key] = split_list(params[key])
    for key in ("duration", "warmup", "trials"):
        if params[key] is not None:
            spec[key] = params[key]
    if params["extra"]:
        spec["args"] = [*spec.get("args", []), *params["extra"]]
    return spec


@click.command("sweep", context_settings={"ignore_unknown_options": True})
@click.option("--workload", "workload", default=None,
              help="Workload file (.toml, .yaml, .json) with the matrix keys below.")
@click.option("--target", "-t", default=None,
              help="Targets, comma-separated; each may carry flags: 'zmq --zmq-mode proxy'.")
@click.option("--pubs", "-p", default=None, help="Publishers, e.g. 1,4.")
@click.option("--subs", "-s", default=None, help="Subscribers, e.g. 1,8,32.")
@click.option("--size", default=None, help="Message sizes in bytes, e.g. 64,1024.")
@click.option("--rate", "-r", default=None, help="Rates per publisher, e.g. 20k,max.")
@click.option("--topics", default=None, help="Topic counts.")
@click.option("--duration", "-d", default=None, help="Measured time of each cell [5s].")
@click.option("--warmup", "-w", default=None, help="Warm-up of each cell [1s].")
@click.option("--trials", type=int, default=None, help="Repeat the whole matrix N times [1].")
@click.option("--out", "-o", default=None,
              help="Directory for the result files [results/sweep-<time>].")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS[:3]), default="text",
              show_default=True, help="Format of the summary table on stdout.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def sweep(**params: Any) -> None:
    """Run every combination of the given values, each as a fresh `msgbench run`.

    Other `msgbench run` options (e.g. `--drain-timeout 3s`) go to every cell.
    """
    try:
        cells = expand(_matrix_from(params))
    except WorkloadError as exc:
        fail(str(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(params["out"] or f"results/sweep-{stamp}")
    err = Console(stderr=True)
    runner = Runner()
    outcomes = run_jobs([Job(c, runner, out_dir) for c in cells], err)
    rows = [o.row() for o in outcomes]
    title = f"msgbench sweep: {len(cells)} cells, results in {out_dir}"
    sys.stdout.write(render(rows, params["fmt"], title))
    failed = [o for o in outcomes if not o.ran]
    if failed:
        err.print(f"{len(failed)} of {len(cells)} cells failed", highlight=False)
        sys.exit(EXIT_FAILED)

"""Designs picked by pattern from the targets' declarations (variants, mode choices,
patterns), as scripts/publish_results.py measures them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from msgbench.api import Client, Pattern, Target, TargetOption, Variant, mode_variants
from msgbench.api.registry import load_target_class
from msgbench.orchestration.designs import Design, carried, designs, narrowed

MODE = TargetOption("--mode", "how", default="a", choices=("a", "b", "c"))


class _Plugin(Target):
    """A target no list anywhere knows: declared by its own class alone."""

    name = "plugin"
    description = "test double of a third-party target"
    patterns = frozenset({Pattern.BROADCAST, Pattern.RPC})
    options = (MODE,)
    variants = (*mode_variants(options, "--mode"), Variant(("--mode", "c", "--x"),
                                                           frozenset({Pattern.RPC})))

    def client(self, endpoint: Mapping[str, object], options: Mapping[str, object]) -> Client:
        raise NotImplementedError


def _installed(*names: str) -> dict[str, type[Target]]:
    try:
        return {n: load_target_class(n) for n in names}
    except Exception as exc:  # an extra not installed: these need every target's library
        pytest.skip(f"needs msgbench[all]: {exc}")


def test_a_targets_declarations_make_its_designs_in_table_order() -> None:
    found = designs(Pattern.RPC, {"plugin": _Plugin, **_installed("inproc")})
    assert [d.flags for d in found] == ["inproc", "plugin", "plugin --mode b",
                                        "plugin --mode c", "plugin --mode c --x"]
    assert [d.flags for d in designs(Pattern.BROADCAST, {"plugin": _Plugin})] == [
        "plugin", "plugin --mode b", "plugin --mode c"]
    assert designs(Pattern.TASKS, {"plugin": _Plugin}) == ()
    assert carried(_Plugin) == {Pattern.BROADCAST, Pattern.RPC}


def test_the_shipped_targets_are_picked_by_pattern() -> None:
    targets = _installed("inproc", "redis", "redis-rpc", "redis-list", "zmq", "ws",
                         "rabbitmq")
    rpc = [d.flags for d in designs(Pattern.RPC, targets)]
    assert "rabbitmq" in rpc  # carried, and once left out of a hand-kept list
    assert {"redis-rpc", "redis-rpc --rpc-reply pubsub", "zmq", "zmq --zmq-mode reqrep",
            "zmq --zmq-mode rpc-broker", "ws --servers 2 --bridge redis"} <= set(rpc)
    tasks = [d.flags for d in designs(Pattern.TASKS, targets)]
    assert tasks[0] == "inproc"
    assert {"zmq", "zmq --zmq-mode broker", "redis-list", "redis-list --list-mode blmove"} \
        <= set(tasks)
    broadcast = [d.flags for d in designs(Pattern.BROADCAST, targets)]
    assert "zmq --zmq-mode proxy" in broadcast and "zmq --zmq-mode broker" not in broadcast
    assert "redis" in broadcast and "redis" not in tasks and "redis" not in rpc


def test_narrowing_takes_target_names_or_whole_designs() -> None:
    found = (Design("zmq"), Design("zmq", ("--zmq-mode", "proxy")), Design("ws"))
    assert narrowed(found, None) == found
    assert narrowed(found, "zmq") == found[:2]
    assert narrowed(found, "ws,zmq --zmq-mode proxy") == (found[1], found[2])


def test_a_wrong_mode_declaration_fails_at_import() -> None:
    with pytest.raises(ValueError, match="--nope is not an option with choices"):
        mode_variants((MODE,), "--nope")
    with pytest.raises(ValueError, match="must be the choices of --mode"):
        mode_variants((MODE,), "--mode", {Pattern.BROADCAST: ("a", "b")})
    by_pattern = mode_variants((MODE,), "--mode", {Pattern.BROADCAST: ("a", "b"),
                                                   Pattern.RPC: ("c",)})
    assert by_pattern == (Variant((), frozenset({Pattern.BROADCAST, Pattern.RPC})),
                          Variant(("--mode", "b"), frozenset({Pattern.BROADCAST})))

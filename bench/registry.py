"""Find targets by name through the ``msgbench.targets`` entry-point group.

A third-party target is a package that declares an entry point in that group;
no change to msgbench is needed.
"""

from __future__ import annotations

from importlib import metadata

from msgbench.target import Target, TargetError

ENTRY_POINT_GROUP = "msgbench.targets"


def target_names() -> list[str]:
    """Return the names of all registered targets, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_target_class(name: str) -> type[Target]:
    """Return the Target class registered as ``name``.

    Raises :class:`TargetError` with the known names when there is no such
    target, or when its module fails to import.
    """
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                raise TargetError(f"target {name!r} failed to load: {exc}") from exc
            if not (isinstance(cls, type) and issubclass(cls, Target)):
                raise TargetError(f"entry point {name!r} is not a msgbench Target")
            return cls
    known = ", ".join(target_names()) or "none installed"
    raise TargetError(f"unknown target {name!r} (known: {known})")


def load_target(name: str) -> Target:
    """Instantiate the target registered as ``name`` (see :func:`load_target_class`)."""
    return load_target_class(name)()

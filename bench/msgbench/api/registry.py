"""Find targets by name through the ``msgbench.targets`` entry-point group.

A third-party target is a package that declares an entry point in that group;
no change to msgbench is needed.
"""

from __future__ import annotations

from importlib import metadata

from msgbench.api.target import Target, TargetError, TargetOption

ENTRY_POINT_GROUP = "msgbench.targets"


def target_names() -> list[str]:
    """Return the names of all registered targets, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_target_class(name: str) -> type[Target]:
    """Return the Target class registered as ``name``.

    Raises :class:`TargetError` with the known names when there is no such
    target, or when its module fails to import.
    """
    # Two installs can both be on the path (a venv that also sees the system site-packages,
    # as `ci --baseline-rev` builds): try each entry point of that name, first that loads wins.
    errors: list[str] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            # a library its entry point's extra would have installed is missing: say which
            # pip command adds it, not the import error alone (a module of the target's own
            # package missing is a broken install, which no extra mends)
            missing = (exc.name or "") if isinstance(exc, ModuleNotFoundError) else ""
            top = missing.split(".")[0]
            if top and ep.extras and not ep.value.startswith(top + "."):
                dist = ep.dist.name if ep.dist is not None else "msgbench"
                errors.append(f"target {name!r} needs {top} (not "
                              f"installed): pip install '{dist}[{','.join(ep.extras)}]'")
            else:
                errors.append(f"target {name!r} failed to load: {exc}")
            continue
        if isinstance(cls, type) and issubclass(cls, Target):
            return cls
        errors.append(f"entry point {name!r} is not a msgbench Target")
    if errors:
        raise TargetError(errors[0])
    known = ", ".join(target_names()) or "none installed"
    raise TargetError(f"unknown target {name!r} (known: {known})")


def load_target(name: str) -> Target:
    """Instantiate the target registered as ``name`` (see :func:`load_target_class`)."""
    return load_target_class(name)()


def all_options() -> dict[str, TargetOption]:
    """Every option any loadable target declares, by flag.

    Two targets may share a flag (``--redis-url``) only as the same kind of value with
    the same choices, bounds and secrecy, since ``msgbench run`` has one such option for
    all of them; otherwise raises :class:`TargetError` naming both.
    """
    out: dict[str, tuple[str, TargetOption]] = {}
    for name in target_names():
        try:
            cls = load_target_class(name)
        except TargetError:
            continue  # reported when it is asked for by name
        for opt in cls.options:
            seen = out.get(opt.flag)
            if seen is None:
                out[opt.flag] = (name, opt)
            elif _shape(seen[1]) != _shape(opt):
                raise TargetError(f"targets {seen[0]!r} and {name!r} both declare {opt.flag} "
                                  "with different kinds of value (kind, choices, bounds or "
                                  "secrecy); one of them must rename it")
    return {flag: opt for flag, (_, opt) in out.items()}


def _shape(opt: TargetOption) -> tuple[object, ...]:
    """What two declarations of one flag must agree on (help and default may differ)."""
    return opt.kind, opt.choices, opt.min, opt.max, opt.secret


def secret_options() -> dict[str, str]:
    """The flags of every option declared ``secret``, each with the environment variable
    that carries its value instead of a command line (``--amqp-url`` ->
    ``MSGBENCH_AMQP_URL``): how sweeps and servers hand a password to a child process."""
    return {flag: opt.env for flag, opt in all_options().items() if opt.env is not None}

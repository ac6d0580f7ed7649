"""Secrets in URLs: one masking function for every message, log line, result and progress line.

A ``redis://user:password@host:port/db`` URL carries its password in the clear,
and URLs end up in error messages, logs, result files and sweep progress lines.
:func:`mask_url` hides the password in every URL of a text, whatever characters
the password holds: a password with ``@``, ``:``, ``/``, spaces or quotes must be
hidden too, even when the user did not percent-encode it. The userinfo of a URL
therefore runs up to the *last* ``@`` before the next URL (or the end of the
text): masking too much of a message is a small price, leaking a password is not.

Passwords are also kept off command lines (visible in ``ps`` to every user): a
process that needs a URL with a password gets it through the environment, under
the name its option's declaration gives (``TargetOption(..., secret=True).env``).
"""

from __future__ import annotations

import re

MASK = "***"

_SCHEME = re.compile(r"(?:^|(?<=[\s'\"=(<\[,]))[A-Za-z][A-Za-z0-9+.\-]*://")
"""Where a URL starts: a scheme at the start of the text or after a space, quote, ``=``,
bracket or comma (so that ``x://`` inside a password does not start a URL of its own)."""


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    ``redis://alice:s3cret@h:6379/0`` becomes ``redis://alice:***@h:6379/0``,
    ``redis://:p@ss@h`` becomes ``redis://:***@h``; a URL without a password
    (``redis://h:6379``, ``redis://alice@h``) is unchanged, as is text without URLs.
    """
    found = list(_SCHEME.finditer(text))
    if not found:
        return text
    out = [text[: found[0].start()]]
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out.append(m.group())
        out.append(_mask_one(text[m.end() : end]))
    return "".join(out)


def _mask_one(rest: str) -> str:
    """Mask the userinfo of a URL whose text after ``scheme://`` is ``rest``."""
    at = rest.rfind("@")
    if at < 0:
        return rest
    userinfo = rest[:at]
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return rest  # a user name alone is no secret
    return f"{user}:{MASK}{rest[at:]}"


def mask_args(argv: list[str]) -> list[str]:
    """Each argument with :func:`mask_url` applied, for printing a command line."""
    return [mask_url(a) for a in argv]

"""Result documents on disk: written atomically, read with one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from msgbench.results.schema import ResultError


def write_json(doc: Any, path: Path) -> Path:
    """Write ``doc`` to ``path`` atomically (a reader never sees half a file) and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path) -> Any:
    """The parsed document at ``path``; raises :class:`ResultError` with one line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except RecursionError:
        raise ResultError(f"{path} is nested too deeply to be a result") from None
    except ValueError as exc:
        raise ResultError(f"{path} is not valid JSON: {exc}") from exc

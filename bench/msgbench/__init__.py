"""msgbench: measure how messages flow through real-time messaging designs."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("msgbench")
except _metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

"""salesmesh: event-driven MLOps for sales demand forecasting."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("salesmesh")
except _metadata.PackageNotFoundError:  # running from a deploy package without dist-info
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

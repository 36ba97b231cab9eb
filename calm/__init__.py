"""calm: measure per-page memory dirtying of live services and replay it into live-migration cost engines."""

from calm.core.version import __version__

__all__ = ["__version__"]

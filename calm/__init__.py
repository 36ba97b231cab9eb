"""calm: measure per-page memory dirtying of live services and replay it into live-migration cost engines."""

__version__ = "0.1.0"

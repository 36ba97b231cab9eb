"""calm's version, in one place (the package, traces and results carry it)."""

__version__ = "0.2.0"

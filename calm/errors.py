"""The one exception type that the `calm` command turns into a single stderr line.

Every user-facing failure (bad option, missing pid, unreadable trace) raises `CalmError`; the CLI
prints `calm: error: <message>` and exits non-zero without a traceback. Anything else escaping is a
bug and is allowed to show its traceback.
"""


class CalmError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code = 1

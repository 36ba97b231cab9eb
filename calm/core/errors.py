"""The exceptions that the `calm` command turns into a single stderr line and an exit code.

Every user-facing failure raises `CalmError` (exit 1: bad input, a failed run) or `UsageError`
(exit 2: the command line itself is wrong, as argparse reports it); the CLI prints
`calm <command>: error: <message>` and exits without a traceback. Anything else escaping is a bug
and is allowed to show its traceback.
"""


class CalmError(Exception):
    """A failure caused by the user's input or environment, reported as one line (exit 1)."""

    exit_code = 1


class UsageError(CalmError):
    """A command line that cannot mean anything: wrong option values or combinations (exit 2)."""

    exit_code = 2

"""Session-wide set-up of the test run.

Ctrl-C reaches the children the tests start: a shell without job control starts background
commands with SIGINT ignored (POSIX), Python then installs no handler and every child inherits
the ignore, so a test that stops `calm record` or `calm replay` with SIGINT (as a user's Ctrl-C
does) would wait forever on a child that never sees it. Seen in a CI trial launched from
`sh -c '... &'`. Putting Python's handler back makes children start with the default disposition,
as they do under a terminal or a CI runner.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

"""Progress reporting shared by record, analyze and replay.

Why two modes: on a terminal a live status line (rich) is what users of perf/damo expect; in CI logs
or when piped, a repainting line is noise, so we print a plain line every few seconds instead.
`--quiet` silences both. Messages (`note`) always go to stderr so stdout stays for results.
"""

from __future__ import annotations

import sys
import time

LINE_EVERY_SECONDS = 5.0


class Progress:
    """A status line that is live on a terminal and line-oriented elsewhere."""

    def __init__(self, *, quiet: bool = False, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interactive = not quiet and self.stream.isatty()
        self._live = None  # rich.live.Live, imported only on a terminal (start-up time)
        self._last_line = 0.0
        if self.interactive:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._console = Console(file=self.stream)
            self._live = Live(Text(""), console=self._console, refresh_per_second=4, transient=True)
            self._live.start()

    def note(self, message: str) -> None:
        """A one-off message (backend choice, a process that exited)."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def update(self, status: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self._text(status))
            return
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY_SECONDS:
            self._last_line = now
            print(status, file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Output directories shared by the commands that write several files (analyze, replay, demo)."""

from __future__ import annotations

import os
from pathlib import Path

from calm.errors import CalmError


def prepare_output_dir(out: Path) -> Path:
    """Creates the output directory (parents too); refuses a file or an unwritable directory."""
    if out.exists() and not out.is_dir():
        raise CalmError(f"output {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CalmError(f"cannot create output directory {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise CalmError(f"output directory {out} is not writable")
    return out

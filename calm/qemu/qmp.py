"""A synchronous QMP client: QEMU's own `qemu.qmp` library driven from a private event loop.

Why a wrapper: qemu.qmp is asyncio-only, while calm's commands and the validation harness are
plain sequential code that polls QEMU between other work (recording, waiting for a guest). The
wrapper owns one event loop per connection, bounds every call by a timeout, and turns the
library's exceptions into one-line `QmpError`s (a `CalmError`, exit status 1) that say what
failed: no socket, not a QEMU, a command QEMU refused.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any

from calm.core.errors import CalmError


class QmpError(CalmError):
    """QEMU could not be reached, or refused a command (the message is QEMU's own)."""


def _library():
    # the library logs lost connections itself; calm reports them as one QmpError line instead
    logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
    try:
        from qemu.qmp import ConnectError, ExecuteError, QMPClient
    except ImportError:
        raise QmpError("the qemu.qmp library is missing: pip install 'calm[qemu]' (or qemu.qmp)") from None
    return QMPClient, ConnectError, ExecuteError


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())


class Monitor:
    """One QMP connection to a QEMU, over its unix socket (`-qmp unix:PATH,server=on,wait=off`).

    >>> with Monitor("/run/vm.qmp") as qmp:
    ...     qmp.execute("query-status")["status"]
    'running'
    """

    def __init__(self, socket_path: str, *, timeout: float = 30.0, name: str | None = None) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        client_class, self._connect_error, self._execute_error = _library()
        self._loop = asyncio.new_event_loop()
        self._client = client_class(name)
        try:
            self._run(self._client.connect(self.socket_path), "connecting")
        except BaseException:
            self._loop.close()
            raise

    def _run(self, coroutine, what: str, timeout: float | None = None):
        limit = self.timeout if timeout is None else timeout
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coroutine, limit))
        except asyncio.TimeoutError:
            raise QmpError(f"QMP {self.socket_path}: no answer to {what} within {limit:g} s") from None
        except self._connect_error as exc:
            if isinstance(exc.exc, OSError):
                raise QmpError(f"QMP {self.socket_path}: cannot connect ({_one_line(exc.exc)}); is QEMU "
                               "running with -qmp unix:PATH,server=on?") from None
            raise QmpError(f"QMP {self.socket_path}: not a QEMU monitor (no QMP greeting: "
                           f"{_one_line(exc.exc or exc)[:120]})") from None
        except self._execute_error as exc:
            raise QmpError(f"QEMU refused {what}: {_one_line(exc)}") from None
        except (OSError, EOFError) as exc:
            raise QmpError(f"QMP {self.socket_path}: connection lost during {what} "
                           f"({_one_line(exc) or type(exc).__name__})") from None

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> Any:
        """Runs one QMP command and returns its "return" value; QmpError if QEMU refuses it."""
        return self._run(self._client.execute(command, arguments), command, timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 5))
        except Exception:  # the peer may be gone already (a QEMU that exited after migrating)
            pass
        finally:
            self._loop.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

"""calm.qemu against a real QEMU (a machine-less `qemu-system-x86_64 -machine none`, which starts
in a moment and runs no guest) and against sockets that are not QEMU: commands, QEMU's refusals,
migration parameters and a migration whose destination refuses, all as one-line errors."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import pytest

from calm.core.errors import CalmError
from calm.qemu import migration
from calm.qemu.qmp import Monitor, QmpError


@pytest.fixture()
def qemu(tmp_path):
    binary = shutil.which("qemu-system-x86_64")
    if binary is None:
        pytest.skip("qemu-system-x86_64 not installed (scripts/install-vm-deps)")
    sock = tmp_path / "qmp.sock"
    proc = subprocess.Popen([binary, "-machine", "none", "-nodefaults", "-display", "none",
                             "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # QEMU creates the socket before it serves it; Monitor's connect waits for the greeting
        for _ in range(600):
            if sock.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert sock.exists(), proc.communicate(timeout=10)[0]
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_commands_and_refusals(qemu):
    with Monitor(str(qemu)) as monitor:
        assert monitor.execute("query-status")["running"] is True
        with pytest.raises(QmpError, match="^QEMU refused no-such-command: The command no-such-command has not been found"):
            monitor.execute("no-such-command")
        assert migration.query(monitor).status == "none"


def test_parameters_are_set_in_qemus_units(qemu):
    with Monitor(str(qemu)) as monitor:
        migration.set_parameters(monitor, max_bandwidth=12_500_000, downtime_limit_ms=250)
        parameters = monitor.execute("query-migrate-parameters")
        assert parameters["max-bandwidth"] == 12_500_000
        assert parameters["downtime-limit"] == 250
        with pytest.raises(CalmError, match="max-bandwidth must be > 0"):
            migration.set_parameters(monitor, max_bandwidth=0)
        with pytest.raises(CalmError, match="downtime-limit must be 0..2000000 ms"):
            migration.set_parameters(monitor, downtime_limit_ms=-1)


def test_a_refusing_destination_ends_the_migration_failed(qemu):
    with socket.socket() as s:  # a port with no listener: bind, then close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Monitor(str(qemu)) as monitor:
        migration.start(monitor, f"tcp:127.0.0.1:{port}")
        final = migration.wait(monitor, deadline_s=60)
    assert final.status == "failed"
    assert "Connection refused" in final.error


def test_no_socket_is_one_clear_error(tmp_path):
    with pytest.raises(QmpError, match=r"cannot connect \(\[Errno 2\] No such file or directory\); is QEMU running"):
        Monitor(str(tmp_path / "nothing.sock"))


def test_a_socket_that_is_not_qemu_is_one_clear_error(tmp_path):
    path = tmp_path / "not-qemu.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer_garbage() -> None:
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        with pytest.raises(QmpError) as info:
            Monitor(str(path), timeout=20)
        assert "\n" not in str(info.value)
        assert str(path) in str(info.value)
    finally:
        thread.join(10)
        server.close()


def test_calc_dirty_rate_refuses_a_fraction_of_a_second(qemu):
    with Monitor(str(qemu)) as monitor, pytest.raises(CalmError, match="calc-time must be a whole number"):
        migration.calc_dirty_rate(monitor, 0)


def test_listen_needs_a_qemu_waiting_for_a_migration(qemu):
    with Monitor(str(qemu)) as monitor, pytest.raises(QmpError, match="^QEMU refused migrate-incoming"):
        migration.listen(monitor)

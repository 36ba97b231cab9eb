"""The house rules every command and module follows (issue 11): one `calm` namespace, layers that
import downwards only, and perf-like command conventions (exit codes, default trace, --json)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collector_helpers import REPO, calm, one_line_error

# Lowest first: a module may import its own layer and the ones before it (docs: architecture in
# README's Development section). Workloads are programs of their own and use only the core; calm.qemu
# drives a running QEMU (QMP) and uses only the core, so commands and the replay's drivers may use it.
LAYERS = ["core", "trace", "collector", "analyzer", "replay", "report", "cli"]
FOLDERS = {"collector": REPO / "collector", "analyzer": REPO / "analyzer", "replay": REPO / "replay"}
SIDE_PACKAGES = {"workloads": {"core", "trace"},  # synthetic traces are written with calm.trace
                 "qemu": {"core"}}
COMMANDS = ("record", "analyze", "replay", "sweep", "model", "report", "demo", "load", "migrate")


def _package_of(path: Path) -> str:
    for name, folder in FOLDERS.items():
        if folder in path.parents:
            return name
    rel = path.relative_to(REPO / "calm")
    return rel.parts[0] if len(rel.parts) > 1 else "calm"


def _calm_imports(path: Path) -> set[str]:
    """The calm sub-packages a module imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "calm" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules() -> list[Path]:
    roots = [REPO / "calm", *FOLDERS.values()]
    return sorted(p for root in roots for p in root.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_layers_import_downwards_only(path: Path) -> None:
    package = _package_of(path)
    imported = _calm_imports(path) - {package, "__main__"}
    if package == "calm":  # calm/__init__.py, calm/__main__.py
        allowed = {"core", "cli"}
    elif package in SIDE_PACKAGES:
        allowed = SIDE_PACKAGES[package]
    else:
        assert package in LAYERS, f"{path}: package calm.{package} has no place in the layering"
        allowed = set(LAYERS[:LAYERS.index(package)]) | ({"workloads", "qemu"} if package == "cli" else set())
    assert imported <= allowed, f"{path} (calm.{package}) imports {sorted(imported - allowed)}"


def test_no_name_is_used_undefined() -> None:
    """pyflakes over the code calm runs: an undefined name is a NameError waiting for the one path
    that reaches it (a dropped import made a command that ignored SIGTERM crash calm record)."""
    from pyflakes.api import checkPath
    from pyflakes.reporter import Reporter
    import io

    out = io.StringIO()
    files = [*_modules(), *sorted((REPO / "scripts").rglob("*.py"))]
    for path in files:
        checkPath(str(path), Reporter(out, out))
    undefined = [line for line in out.getvalue().splitlines() if "undefined name" in line]
    assert not undefined, "\n".join(undefined)


def test_modules_stay_small() -> None:
    big = [f"{p.relative_to(REPO)}: {n}" for p in _modules() if (n := len(p.read_text().splitlines())) > 450]
    assert not big, big


def test_every_package_is_installed() -> None:
    """pyproject lists packages by name (package-dir maps folders to calm.*): a new subpackage left
    out of the list works in an editable install and is missing from a wheel."""
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    dirs = {"calm": REPO / "calm", **{f"calm.{n}": d for n, d in FOLDERS.items()}}
    found = {name + "".join("." + part for part in init.parent.relative_to(root).parts)
             for name, root in dirs.items() for init in root.rglob("__init__.py")}
    assert found - listed == set(), f"not in pyproject's packages: {sorted(found - listed)}"


def test_installed_names_live_under_calm(tmp_path: Path) -> None:
    code = ("import importlib.util, calm.collector, calm.analyzer, calm.replay, calm.trace.reader\n"
            "print([n for n in ('collector', 'analyzer', 'replay') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_version_and_help_do_not_load_heavy_libraries(tmp_path: Path) -> None:
    code = ("import sys\nfrom calm.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('numpy', 'h5py', 'matplotlib', 'rich', 'psutil') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_a_usage_error_with_exit_2(command: str, tmp_path: Path) -> None:
    line = one_line_error(calm(command, "--no-such-option", cwd=tmp_path), exit_code=2)
    assert line.startswith(f"calm {command}: error: ")


@pytest.mark.parametrize("command", ["analyze", "replay", "report"])
def test_missing_trace_is_exit_1_and_calm_h5_is_the_default(command: str, tmp_path: Path) -> None:
    named = one_line_error(calm(command, str(tmp_path / "nope.h5"), cwd=tmp_path), exit_code=1)
    assert "nope.h5 does not exist" in named
    default = one_line_error(calm(command, cwd=tmp_path), exit_code=1)
    assert "trace calm.h5 does not exist" in default
    assert list(tmp_path.iterdir()) == []  # a refused command leaves nothing behind


def test_record_exits_with_the_commands_status(tmp_path: Path) -> None:
    result = calm("record", "-q", "-o", str(tmp_path / "t.h5"), "--", "sh", "-c", "sleep 0.5; exit 3")
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "t.h5").exists()


def test_a_command_that_ends_before_the_first_sample_still_gives_its_status(tmp_path: Path) -> None:
    """Issue 11's `calm record -- sh -c 'exit 3'` exits 3, whether calm caught the shell in time to
    record it (a trace) or not (one line, nothing recorded); `true`, which leaves nothing to
    record, is a failed run (1); a command killed by SIGKILL gives 137, as a shell says."""
    for command, wanted in ((["sh", "-c", "exit 3"], 3), (["sh", "-c", "kill -9 $$"], 137)):
        for attempt in range(3):
            out = tmp_path / f"t{attempt}-{wanted}.h5"
            result = calm("record", "-q", "-o", str(out), "--", *command)
            assert result.returncode == wanted, (command, result.stderr)
            lines = result.stderr.splitlines()
            assert out.exists() or (len(lines) == 1 and f"exited with status {wanted} before recording started"
                                    in lines[0]), (command, result.stderr)
    result = calm("record", "-q", "-o", str(tmp_path / "true.h5"), "--", "true")
    assert result.returncode in (0, 1), result.stderr  # 0 only if calm caught `true` alive and recorded it
    assert (result.returncode == 0) == (tmp_path / "true.h5").exists(), result.stderr


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """When the recording ends first, calm stops its command: SIGTERM, then SIGKILL after the grace
    period for one that ignores it (a mistaken import once made that path a NameError traceback)."""
    out = tmp_path / "t.h5"
    result = calm("record", "-q", "--duration", "1", "-o", str(out), "--",
                  "sh", "-c", "trap '' TERM; while :; do sleep 0.2; done")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert out.exists()


def test_default_trace_json_summaries_and_outputs_next_to_the_trace(tmp_path: Path) -> None:
    """record writes ./calm.h5; analyze and replay read it by default, write next to it, print
    JSON on stdout with --json, and refuse to overwrite without --force."""
    rec = calm("record", "--json", "-q", "--", sys.executable, "-c",
               "import time; b = bytearray(1 << 22)\nfor i in range(30):\n    b[i * 4096] = 1; time.sleep(0.05)",
               cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    summary = json.loads(rec.stdout)
    assert summary["output"] == "calm.h5" and summary["samples"] > 0 and summary["command_status"] == 0
    analyzed = calm("analyze", "--json", "--no-plots", "-q", cwd=tmp_path)
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["samples"] == summary["samples"]
    assert (tmp_path / "calm-analysis" / "summary.json").exists()
    again = one_line_error(calm("analyze", "--no-plots", "-q", cwd=tmp_path), exit_code=1)
    assert "not empty; use --force" in again
    assert calm("analyze", "--no-plots", "-q", "-f", cwd=tmp_path).returncode == 0
    replayed = calm("replay", "--json", "--no-plots", "-q", "-s", "64MiB@1Gbit", "-a", "calm,xen", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    rows = json.loads(replayed.stdout)
    assert [r["algorithm"] for r in rows] == ["calm", "xen"]
    assert (tmp_path / "calm-replay" / "results.json").exists()
    model = calm("model", "--json", "--no-plots", "-q", "-o", str(tmp_path / "m"), cwd=tmp_path)
    assert model.returncode == 0, model.stderr
    assert json.loads(model.stdout)["tool"] == "calm model"

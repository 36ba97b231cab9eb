"""Reading the results.json that `calm replay` writes (the contract in replay/outputs.py).

Why validate here: `calm report --replay FILE` may be handed any file; a wrong one must be one
clear error line, not a KeyError deep inside the HTML builder.
"""

from __future__ import annotations

import json
from pathlib import Path

from calm.core.errors import CalmError

_RESULT_KEYS = ("algorithm", "cost", "total_time", "precopy_time", "downtime", "pages_sent", "rounds",
                "stop_reason", "forced", "series")
_SCENARIO_KEYS = ("name", "ram_bytes", "bandwidth_bps", "results")


def read_json(path: Path, what: str, name: str) -> object:
    """The JSON in `path` (`what` and the expected file `name` word the errors), or one CalmError."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalmError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise CalmError(f"{what} {path} is a directory; give its {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalmError(f"cannot read {what} {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CalmError(f"{what} {path} is not JSON ({exc.msg} at line {exc.lineno})") from None


def load_results(path: str | Path) -> dict:
    """Parses and checks a results.json; raises CalmError naming what is wrong."""
    path = Path(path)
    data = read_json(path, "replay results", "results.json")
    check_results(data, str(path))
    return data


def check_results(data: object, where: str) -> None:
    if not isinstance(data, dict) or data.get("tool") != "calm replay":
        raise CalmError(f"{where} is not a results.json written by `calm replay`")
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios:
        raise CalmError(f"{where} holds no replay scenario")
    for k in ("page_size", "step_seconds", "workload", "cost"):
        if k not in data:
            raise CalmError(f"{where} lacks '{k}'; was it written by another calm version?")
    for sc in scenarios:
        missing = [k for k in _SCENARIO_KEYS if k not in sc]
        if missing:
            raise CalmError(f"{where}: a scenario lacks {', '.join(missing)}")
        for r in sc["results"]:
            missing = [k for k in _RESULT_KEYS if k not in r]
            if missing:
                raise CalmError(f"{where}: a result of {sc['name']} lacks {', '.join(missing)}")


def recording_mismatch(results: dict, identity: dict, trace_name: str, where: str) -> tuple[str, str]:
    """Whether replay results belong to the trace being reported: ("", "") when they do,
    ("warn", why) when they may not (a synthetic workload, or results too old to say), and
    ("refuse", why) when they were computed from another recording.

    `identity` is `calm.trace.reader.recording_identity` of the trace; results.json holds the
    identity of the trace it replayed (workload.recording) since this check exists."""
    workload = results.get("workload", {})
    if workload.get("kind") == "uniform":
        return "warn", (f"{where}: a replay of a synthetic uniform workload (p = {workload.get('p')}), "
                        f"not of {trace_name}")
    if workload.get("kind") != "trace":
        return "warn", f"{where}: no word of which workload was replayed"
    theirs = workload.get("recording") or {}
    source = workload.get("path", "another trace")
    if theirs:
        same = (theirs.get("hostname") == identity["hostname"]
                and abs(float(theirs.get("start_time_unix", -1)) - float(identity["start_time_unix"])) < 1e-6
                and int(theirs.get("samples", -1)) == int(identity["samples"]))
        if same:
            return "", ""
        return "refuse", (f"{where}: computed from {source} (recorded on {theirs.get('hostname')} at "
                          f"{theirs.get('start_time')}, {theirs.get('samples')} samples), not from {trace_name} "
                          f"(recorded on {identity['hostname']} at {identity['start_time']}, "
                          f"{identity['samples']} samples); replay this trace first")
    replayed = int(workload.get("n_steps", -1)) + int(workload.get("skipped_samples", 0))
    if replayed != int(identity["samples"]):
        return "refuse", (f"{where}: computed from {source} ({replayed} samples), not from {trace_name} "
                          f"({identity['samples']} samples); replay this trace first")
    if Path(str(source)).name != Path(trace_name).name:
        return "warn", (f"{where}: computed from {source}, which may not be {trace_name} (results.json of "
                        "an older calm does not say which recording it replayed)")
    return "", ""

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


def load_results(path: str | Path) -> dict:
    """Parses and checks a results.json; raises CalmError naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalmError(f"replay results {path} not found") from None
    except IsADirectoryError:
        raise CalmError(f"replay results {path} is a directory; give its results.json") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalmError(f"cannot read replay results {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CalmError(f"replay results {path} is not JSON ({exc.msg} at line {exc.lineno})") from None
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


def best_algorithms(scenario: dict) -> set[str]:
    """The algorithm(s) with the lowest cost in a scenario (ties all win)."""
    costs = [(r["cost"], r["algorithm"]) for r in scenario["results"] if r["cost"] is not None]
    if not costs:
        return set()
    low = min(c for c, _ in costs)
    return {a for c, a in costs if c <= low * (1 + 1e-9)}

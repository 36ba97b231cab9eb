"""README.md's measured figures come from scripts/refresh-readme-figures: every block is there,
says which command produced it on which machine, and the deterministic one (`calm model`) is
exactly what the current code prints."""

from __future__ import annotations

import re

from collector_helpers import REPO, calm

BLOCKS = ("demo", "sqlite", "model")


def _blocks() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    found = {name: body.strip() for name, body in re.findall(
        r"<!-- BEGIN refresh-readme-figures: (\w+) -->(.*?)<!-- END refresh-readme-figures: \1 -->", text, re.S)}
    assert sorted(found) == sorted(BLOCKS), found.keys()
    return found


def test_every_block_names_its_command_machine_and_date() -> None:
    for name, body in _blocks().items():
        assert re.match(r"One run of `calm \w+[^`]*` on \S+ \(\d+ vCPUs, .*Linux .*\), \d{4}-\d\d-\d\d \d\d:\d\d UTC",
                        body), (name, body[:200])


def test_the_model_block_is_what_calm_model_prints_today(tmp_path) -> None:
    body = _blocks()["model"]
    commands = re.findall(r"^\$ calm (model.*)$", body, re.M)
    assert len(commands) == 2, body
    for i, command in enumerate(commands):
        shown = body.split(f"$ calm {command}\n", 1)[1].split("\n$ ", 1)[0].split("\n```", 1)[0]
        printed = calm(*command.split(), "--no-plots", "-o", str(tmp_path / f"m{i}"),
                       check=True).stdout.rstrip()
        assert printed == shown, (command, printed, shown)

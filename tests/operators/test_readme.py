"""The README's command list keeps up with cli.py (issue 13, item 10: `sync --bulk` was missing)."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["sync", "status", "retry", "replay", "schedule", "doctor"])
def test_every_option_of_the_operators_commands_is_in_the_readme(command):
    import cli
    options = [opt for param in cli.cli.commands[command].params for opt in getattr(param, "opts", [])
               if opt.startswith("--") and opt != "--help"]
    missing = [opt for opt in options if opt not in README]
    assert not missing, f"README does not mention `{command} {' '.join(missing)}`"


def test_the_readme_says_schedule_refuses_a_short_interval():
    assert "`--every` below 10\n  seconds is refused (exit 2)" in README
    assert "![The demo's report at 1280 px](docs/report.png)" in README and (ROOT / "docs" / "report.png").exists()

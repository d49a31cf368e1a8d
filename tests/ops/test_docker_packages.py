"""The image holds every package the job imports: a package left out of the Dockerfile's COPY lines
breaks the container at start while every test outside Docker stays green."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_IMAGE = {"tests", "bench"}


def _copied() -> set[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return {src.strip("./").rstrip("/") for line in re.findall(r"^COPY (.+)$", text, flags=re.M)
            for src in line.split()[:-1]}


def test_every_top_level_package_and_the_mappings_are_copied_into_the_image():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_IN_IMAGE
    assert packages and packages <= _copied(), sorted(packages - _copied())
    assert {"field_mapping.json", "examples", "cli.py"} <= _copied()

"""Every test the design names as the proof of a guarantee exists (`file::test` in docs/design.md)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_named_in_the_design_exists():
    named = REFERENCE.findall((ROOT / "docs" / "design.md").read_text())
    assert len(named) >= 20
    missing = [f"{path}::{name}" for path, name in named
               if not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)]
    assert missing == []

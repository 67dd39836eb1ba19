"""The version of meshvpn: the one place it is written (pyproject.toml reads it for the wheel)."""
from __future__ import annotations

VERSION = "0.2.0"

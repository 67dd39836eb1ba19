"""Text another party controls, made safe to print on a terminal. Pure.

Owns the one rule every command line applies to data it did not write (a node's name, a peer's
chat message, an answer of the API): every terminal control (C0 with newline and tab, DEL, C1)
is shown as a `\\xNN` escape, so the text can neither move the cursor, erase or forge lines, set
the window title nor write the clipboard (OSC 52).
"""
from __future__ import annotations

import re

# C0 controls (newline and tab included: they would forge table rows and lines), DEL and C1.
TERMINAL_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(value: object) -> str:
    """`value` as text with every terminal control shown as a \\xNN escape, never sent to the terminal."""
    return TERMINAL_CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))

"""What a long-running meshvpn program on a node keeps out of its memory, set before it imports httpx.

httpx imports its command line (`httpx._main`: click, rich and pygments, 4.2-4.7 MB per process)
whenever those are installed, and on a meshvpn host they are (uvicorn needs click, meshctl rich).
The agent and the chat daemon never run it; a module marked absent is an ImportError, on which
httpx defines a stub `main` instead (its own fallback for installs without the `cli` extra).
"""
import sys


def without_httpx_command_line() -> None:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

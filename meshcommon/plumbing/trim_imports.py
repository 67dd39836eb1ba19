"""What a long-running meshvpn program on a node keeps out of its memory, set before it imports anything.

- httpx imports its command line (`httpx._main`: click, rich and pygments, 4.2-4.7 MB per process)
  whenever those are installed, and on a meshvpn host they are (uvicorn needs click, meshctl rich).
  The agent and the chat daemon never run it; a module marked absent is an ImportError, on which
  httpx defines a stub `main` instead (its own fallback for installs without the `cli` extra).
- pyroute2's package `__init__` imports every part of the library (conntrack, ipset, ndb, nl80211,
  plan9...: 6.8 MB and 81 modules; svinota/pyroute2#1404). The agent uses rtnetlink and
  WireGuard's generic netlink, and imports them by their modules' names. `pyroute2_on_demand`
  registers the package without running its `__init__`: its submodules import as usual, and the
  first other name asked of the package (`from pyroute2 import NDB`) runs the `__init__` then, so
  nothing that imports pyroute2 the documented way breaks.
"""
import importlib
import importlib.util
import sys
import threading


def without_httpx_command_line() -> None:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def pyroute2_on_demand() -> None:
    if "pyroute2" in sys.modules:
        return  # already imported whole
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # not installed: the import that needs it says so
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    whole = threading.RLock()  # one thread runs the __init__, the others wait for it
    ran: list[bool] = []

    def __getattr__(name: str) -> object:
        # A submodule (`from pyroute2 import config`, as pyroute2's own modules do) imports alone.
        if not name.startswith("__") and importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        with whole:
            if not ran:
                ran.append(True)  # a name asked while the __init__ runs is looked up as it stands
                try:
                    loader.exec_module(package)  # the whole package, as `import pyroute2` would have run it
                except BaseException:
                    ran.clear()  # the next asker runs it again, as a failed import would be retried
                    raise
        try:
            return vars(package)[name]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}") from None

    vars(package)["__getattr__"] = __getattr__  # PEP 562: asked for the names not (yet) set
    sys.modules["pyroute2"] = package

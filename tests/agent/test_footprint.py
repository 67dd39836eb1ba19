"""What a started agent has loaded: every module it imports stays in its memory for good (issue 13)."""
import subprocess
import sys
from pathlib import Path

from agent.core import intake
from agent.statedir import StateDir
from meshcommon.contract import keys
from tests.agent.data import entry, identity, received

ROOT = Path(__file__).resolve().parents[2]

# What an agent restarted on an enrolled node with a cached netmap does before it idles: the
# entry point's imports, `Agent.start` (key on disk, the cache restored and checked), a config
# rendered, a registration proven.
START = """
import asyncio, sys
from pathlib import Path

from agent.cli import main  # the `meshagent` entry point
from agent.core import render
from agent.agent import Agent
from agent.core.desired import desired_state
from agent.core.settings import AgentSettings
from meshcommon.contract import keys

async def start():
    settings = AgentSettings(("http://control.test",), None, "me", state_dir=Path(sys.argv[1]), backend="userspace")
    agent = await Agent.start(settings, asyncio.Event())
    netmap = agent.session.netmap
    render.render(desired_state(netmap, settings.interface, settings.listen_port), agent.reconciler.private_key,
                  netmap.revision)
    keys.prove(agent.reconciler.private_key, keys.public_key_of(keys.new_private_key()), keys.encode(bytes(32)))
    await agent.client.close()

asyncio.run(start())
print("\\n".join(sorted(sys.modules)))
"""

# Each was loaded by every agent and used by none: httpx's command line (click, rich, pygments:
# 4.7 MB), cryptography's key serialization, the parts of pyroute2 its package `__init__` imports
# (6.8 MB: a sample of them here; the agent uses rtnetlink and WireGuard's generic netlink).
NEVER = ("click", "rich", "pygments", "cryptography.hazmat.primitives.serialization",
         "pyroute2.ndb", "pyroute2.ipset", "pyroute2.conntrack", "pyroute2.plan9", "pyroute2.nslink")


def test_a_restarted_agent_loads_none_of_what_it_never_uses(tmp_path):
    state = StateDir(tmp_path)
    state.key_path.write_text(keys.new_private_key() + "\n")
    state.save_identity(identity())
    state.save_netmap(intake.cache_bytes(received({"a": entry("a", "100.64.0.2")})))
    done = subprocess.run([sys.executable, "-c", START, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(done.stdout.split())
    assert {"httpx", "jinja2", "pyroute2.iproute.linux",
            "cryptography.hazmat.primitives.asymmetric.x25519"} <= loaded, \
        "the start-up path ran"
    assert not {name for name in loaded if name.split(".")[0] in NEVER or name.startswith(NEVER)}



PYROUTE2_AS_DOCUMENTED = """
import sys
import agent  # registers pyroute2 without its package __init__
from pyroute2.iproute.linux import IPRoute
import pyroute2
assert "pyroute2.ndb" not in sys.modules, "a submodule's import ran the package __init__"
from pyroute2 import NDB, IPRoute as WholeIPRoute, config  # the documented way, in the same process
assert WholeIPRoute is IPRoute and "pyroute2.ndb" in sys.modules
assert pyroute2.__version__ != "unknown" and config.__name__ == "pyroute2.config"
try:
    pyroute2.NoSuchName
except AttributeError as exc:
    print("absent:", exc)
"""


def test_pyroute2_without_its_package_init_still_imports_the_documented_way():
    done = subprocess.run([sys.executable, "-c", PYROUTE2_AS_DOCUMENTED], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "absent:" in done.stdout and "NoSuchName" in done.stdout


PYROUTE2_FROM_THREADS = """
import sys, threading
import agent  # registers pyroute2 without its package __init__
from pyroute2.iproute.linux import IPRoute
errors, start = [], threading.Barrier(8)

def ask():
    start.wait()
    try:
        from pyroute2 import NDB, IPRoute as WholeIPRoute
        assert WholeIPRoute is IPRoute and NDB
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=ask) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors)
"""


def test_threads_asking_pyroute2_at_once_all_get_the_whole_package():
    done = subprocess.run([sys.executable, "-c", PYROUTE2_FROM_THREADS], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr

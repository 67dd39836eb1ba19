"""What a chat daemon loads stays in its memory for good: httpx's command line must not (issue 13)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The imports of `meshchat serve`: its entry point, then what serve() imports before it runs.
SERVE = """
import sys
from chat.cli import main  # the `meshchat` entry point
import uvicorn
from chat import guard, transport
from chat.daemon import Chat, write_pointer
from chat.store import Store
from chat.web import create_app
print("\\n".join(sorted(sys.modules)))
"""


def test_a_chat_daemon_loads_no_part_of_httpx_command_line():
    done = subprocess.run([sys.executable, "-c", SERVE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    loaded = set(done.stdout.split())
    assert {"httpx", "uvicorn", "chat.web"} <= loaded, "the serve path ran"
    assert not {name for name in loaded if name.split(".")[0] in ("rich", "pygments")}

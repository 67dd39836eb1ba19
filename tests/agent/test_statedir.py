"""The state directory: private, atomic files that read back as written, and read as absent when broken."""
import stat

from agent.statedir import StateDir
from tests.agent.data import identity


def test_state_writes_keep_the_state_directory_0700_and_files_0600(tmp_path):
    fresh, loose = StateDir(tmp_path / "fresh"), StateDir(tmp_path / "loose")
    loose.root.mkdir(mode=0o755)
    loose.root.chmod(0o755)
    for state in (fresh, loose):
        state.save_identity(identity())
        assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
        assert stat.S_IMODE(state.node_path.stat().st_mode) == 0o600


def test_identity_reads_back_and_is_forgotten_with_the_netmap(tmp_path):
    state = StateDir(tmp_path)
    assert state.identity() is None
    state.save_identity(identity())
    state.save_netmap(b"{}")
    assert state.identity() == identity()
    state.forget_identity()
    assert state.identity() is None and state.netmap() is None


def test_a_node_file_older_agents_wrote_still_reads(tmp_path):
    state = StateDir(tmp_path)
    state.node_path.write_text('{"node_id": "me", "name": "alpha", "mesh_ip": "100.64.0.1", "mesh_prefix": '
                               '"100.64.0.0/10", "node_token": "mvn_node", "heartbeat_interval": 2.0, '
                               '"offline_after": 6.0, "revision": 1, "control_urls": ["http://control.test"]}')
    assert state.identity() == identity()


def test_broken_files_read_as_absent(tmp_path):
    state = StateDir(tmp_path)
    state.node_path.write_text("{not json")
    assert state.identity() is None
    state.node_path.write_text('{"node_id": "me"}')
    assert state.identity() is None


def test_the_config_is_written_only_when_it_changes(tmp_path):
    state = StateDir(tmp_path)
    assert state.save_conf("[Interface]\n") and not state.save_conf("[Interface]\n")
    assert stat.S_IMODE(state.conf_path.stat().st_mode) == 0o600
    assert state.save_conf("[Interface]\nListenPort = 1\n")


def test_the_interface_is_remembered(tmp_path):
    state = StateDir(tmp_path)
    assert state.interface() is None
    state.save_interface("mesh7")
    assert state.interface() == "mesh7"
    state.interface_path.write_text("\n")
    assert state.interface() is None

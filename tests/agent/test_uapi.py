"""The UAPI text: `get=1` answers read into the agent's types, `set=1` requests that say only what changes."""
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core import uapi
from agent.core.model import PeerStats, WgPeer
from meshcommon.contract import keys
from tests.agent.data import key

PRIVATE = keys.new_private_key()
KEY_A, KEY_B = key(), key()


def hexed(k: str) -> str:
    return base64.b64decode(k).hex()


ANSWER = (f"private_key={hexed(PRIVATE)}\nlisten_port=51820\n"
          f"public_key={hexed(KEY_A)}\npreshared_key={'0' * 64}\nprotocol_version=1\nendpoint=192.0.2.1:51820\n"
          "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=12\ntx_bytes=20\nrx_bytes=10\n"
          "persistent_keepalive_interval=25\nallowed_ip=100.64.0.3/32\nallowed_ip=100.64.0.2/32\n"
          f"public_key={hexed(KEY_B)}\npreshared_key={'0' * 64}\nprotocol_version=1\nlast_handshake_time_sec=0\n"
          "last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n"
          "errno=0\n\n")


def test_a_get_answer_reads_into_peers_and_counters():
    device = uapi.parse_get(ANSWER)
    assert (device.listen_port, device.public_key) == (51820, keys.public_key_of(PRIVATE))
    assert device.peers == (WgPeer(KEY_A, ("100.64.0.2/32", "100.64.0.3/32"), "192.0.2.1:51820", 25),
                            WgPeer(KEY_B, (), None, 0))
    assert device.stats == (PeerStats(KEY_A, "192.0.2.1:51820", 1700000000, 10, 20), PeerStats(KEY_B, None, 0, 0, 0))


def test_a_fresh_device_has_no_key_and_no_peers():
    device = uapi.parse_get("listen_port=39468\nerrno=0\n\n")
    assert (device.listen_port, device.public_key, device.peers, device.stats) == (39468, None, (), ())


@pytest.mark.parametrize("answer", ["errno=-22\n\n", "listen_port=1\n\n", "garbage\nerrno=0\n\n",
                                    "public_key=abcd\nerrno=0\n\n", f"public_key={'0' * 64}\nrx_bytes=x\nerrno=0\n\n"])
def test_what_is_not_a_good_answer_is_refused(answer):
    with pytest.raises(uapi.BadAnswer):
        uapi.parse_get(answer)


def test_errno_ends_an_answer():
    assert uapi.errno_of("errno=0\n\n") == 0 and uapi.errno_of("errno=-22\n\n") == -22
    with pytest.raises(uapi.BadAnswer):
        uapi.errno_of("")


def test_an_added_or_updated_peer_is_written_whole_but_without_an_endpoint_it_was_not_given():
    with_endpoint = uapi.set_peer(WgPeer(KEY_A, ("100.64.0.2/32",), "[fd00::0001]:51820", 25, "a"))
    assert with_endpoint == (f"set=1\npublic_key={hexed(KEY_A)}\nreplace_allowed_ips=true\nallowed_ip=100.64.0.2/32\n"
                             "persistent_keepalive_interval=25\nendpoint=[fd00::1]:51820\n\n").encode()
    roamed = uapi.set_peer(WgPeer(KEY_A, ("100.64.0.2/32",), None, 25))
    assert b"endpoint" not in roamed and roamed.endswith(b"persistent_keepalive_interval=25\n\n")


def test_a_removal_never_creates_the_peer_it_removes():
    assert uapi.remove_peer(KEY_A) == f"set=1\npublic_key={hexed(KEY_A)}\nupdate_only=true\nremove=true\n\n".encode()


def test_the_device_gets_only_what_is_given():
    assert uapi.set_device(listen_port=51820) == b"set=1\nlisten_port=51820\n\n"
    assert uapi.set_device(PRIVATE) == f"set=1\nprivate_key={hexed(PRIVATE)}\n\n".encode()
    assert b"listen_port" not in uapi.set_device(PRIVATE, None)


@pytest.mark.parametrize("endpoint", ["peer.example:51820", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000"])
def test_only_numeric_endpoints_are_written(endpoint):
    with pytest.raises(ValueError):
        uapi.set_peer(WgPeer(KEY_A, ("100.64.0.2/32",), endpoint, 25))


ports = st.integers(min_value=1, max_value=65535)
octets = st.integers(min_value=0, max_value=255)
peers = st.builds(
    WgPeer, st.sampled_from([KEY_A, KEY_B]),
    st.lists(st.builds(lambda a, b: f"100.64.{a}.{b}/32", octets, octets), max_size=3, unique=True).map(
        lambda ips: tuple(sorted(ips))),
    st.one_of(st.none(), st.builds(lambda a, p: f"192.0.2.{a}:{p}", octets, ports)),
    st.integers(min_value=0, max_value=65535))


@given(peers)
def test_what_is_set_reads_back_the_same(peer):
    """A set request, applied as wireguard-go would to a new peer, answers a get with that peer."""
    lines = uapi.set_peer(peer).decode().splitlines()[1:-1]
    answer = "\n".join(line for line in lines if not line.startswith("replace_allowed_ips")) + "\nerrno=0\n\n"
    [read] = uapi.parse_get(answer).peers
    assert read == peer

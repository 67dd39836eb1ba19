"""The kernel backend's requests (agent/core/genl.py) and how apply sends them: one peer per request,
with the meaning of the UAPI ones, and a peer the kernel refuses failing alone."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.generic.wireguard import wgmsg

from agent import wg
from agent.apply import Requests, Steps, Writes, add_peers, remove_peers
from agent.core import genl
from agent.core.model import Plan, StepKind, WgPeer
from tests.agent.data import key


def encoded(request: dict) -> wgmsg:
    """The request as pyroute2 puts it on the wire, decoded back: what the kernel reads."""
    from pyroute2.netlink.generic.wireguard import AsyncWireGuard
    msg = wgmsg()
    msg["attrs"].append(["WGDEVICE_A_IFNAME", "mesh0"])
    if "peer" in request:
        # Its request builder, without a socket (it keeps no state of its own).
        builder = AsyncWireGuard.__new__(AsyncWireGuard)
        builder._wg_set_peer(msg, request["peer"])
    msg.encode()
    back = wgmsg(msg.data)
    back.decode()
    return back


def test_a_peer_is_written_whole_its_allowed_ips_replaced_and_no_endpoint_it_was_not_given():
    peer = WgPeer(key(), ("100.64.0.2/32", "10.1.0.0/24"), None, 25)
    request = genl.set_peer(peer)["peer"]
    assert request == {"public_key": peer.public_key, "replace_allowed_ips": True,
                       "allowed_ips": ["100.64.0.2/32", "10.1.0.0/24"], "persistent_keepalive": 25}
    [attrs] = encoded({"peer": request}).get_attr("WGDEVICE_A_PEERS")
    assert attrs.get_attr("WGPEER_A_FLAGS") == 2  # WGPEER_F_REPLACE_ALLOWEDIPS
    assert attrs.get_attr("WGPEER_A_ENDPOINT") is None
    assert [ip["addr"] for ip in attrs.get_attr("WGPEER_A_ALLOWEDIPS")] == ["100.64.0.2/32", "10.1.0.0/24"]


@pytest.mark.parametrize("endpoint, address, port", [
    ("192.0.2.1:51820", "192.0.2.1", 51820), ("[2001:db8::5]:51820", "2001:db8::5", 51820)])
def test_an_endpoint_is_numeric(endpoint, address, port):
    request = genl.set_peer(WgPeer(key(), ("100.64.0.2/32",), endpoint, 0))["peer"]
    assert (request["endpoint_addr"], request["endpoint_port"]) == (address, port)
    [attrs] = encoded({"peer": request}).get_attr("WGDEVICE_A_PEERS")
    assert attrs.get_attr("WGPEER_A_ENDPOINT")["addr"] == address


@pytest.mark.parametrize("endpoint", ["example.org:51820", "[fe80::1%eth0]:51820", "192.0.2.1", "192.0.2.1:0",
                                      "192.0.2.1:70000"])
def test_what_the_kernel_cannot_take_is_refused_before_any_request(endpoint):
    with pytest.raises(ValueError):
        genl.set_peer(WgPeer(key(), ("100.64.0.2/32",), endpoint, 25))


def test_a_removal_never_creates_the_peer_and_the_device_gets_only_what_is_given():
    gone = key()
    assert genl.remove_peer(gone) == {"peer": {"public_key": gone, "remove": True}}
    [attrs] = encoded(genl.remove_peer(gone)).get_attr("WGDEVICE_A_PEERS")
    assert attrs.get_attr("WGPEER_A_FLAGS") == 1  # WGPEER_F_REMOVE_ME: the kernel creates nothing to remove
    private = key()
    assert genl.set_device(private) == {"private_key": private}
    assert genl.set_device(listen_port=51820) == {"listen_port": 51820}
    assert genl.set_device() == {}
    with pytest.raises(ValueError):
        genl.set_device("not a key")


class Kernel:
    """The generic netlink connection, at the edge: records each request, refuses one peer's."""

    def __init__(self, refused: str | None = None):
        self.sent: list[dict] = []
        self.refused = refused

    def set(self, request: dict) -> None:
        if request.get("peer", {}).get("public_key") == self.refused:
            raise wg.WgError("netlink set: Invalid argument")
        self.sent.append(request)


def test_each_peer_is_its_own_request_and_one_the_kernel_refuses_fails_alone():
    a, b, c = (WgPeer(key(), (f"100.64.0.{i}/32",), f"10.9.0.{i}:51820", 25) for i in (2, 3, 4))
    gone = WgPeer(key(), ("100.64.0.9/32",), None, 25)
    kernel = Kernel(refused=b.public_key)
    steps = Steps(Writes())
    plan = Plan(set_private_key=True, listen_port=51820, peers_added=(a, b), peers_updated=((c, c),),
                peers_removed=(gone,))
    requests = Requests(genl, kernel)
    add_peers(steps, requests, plan, "mesh0", key())
    remove_peers(steps, requests, plan)
    result = steps.result()
    assert [(s.kind, s.target) for s in result.done] == [
        (StepKind.DEVICE_SET, "mesh0"), (StepKind.PEER_ADDED, a.public_key), (StepKind.PEER_UPDATED, c.public_key),
        (StepKind.PEER_REMOVED, gone.public_key)]
    assert [(f.step.kind, f.step.target) for f in result.failed] == [(StepKind.PEER_ADDED, b.public_key)]
    assert len(kernel.sent) == 4 and steps.writes.wireguard == 5  # every request counted, the refused one too


@given(st.lists(st.sampled_from(["100.64.0.2/32", "10.0.0.0/8", "fd00::1/128", "2001:db8::/64"]), unique=True),
       st.integers(0, 65535))
def test_what_is_written_reads_back_the_same(ips, keepalive):
    peer = WgPeer(key(), tuple(ips), "192.0.2.1:51820", keepalive)
    [attrs] = encoded(genl.set_peer(peer)).get_attr("WGDEVICE_A_PEERS")
    assert attrs.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == keepalive
    assert [ip["addr"] for ip in attrs.get_attr("WGPEER_A_ALLOWEDIPS") or ()] == list(ips)

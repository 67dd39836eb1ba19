"""Reading WireGuard without a subprocess: the kernel's generic netlink answer, and the UAPI client
against a socket that answers as wireguard-go does."""
import base64
import os
import socket
import threading

import pytest
from pyroute2.netlink.generic.wireguard import AsyncWireGuard, wgmsg

from agent import wg
from agent.core import uapi
from agent.core.model import PeerStats, WgPeer
from tests.agent.data import key

DEVICE_KEY, KEY_A, KEY_B = key(), key(), key()


def netlink_message(peers: list[list], device: bool = True) -> wgmsg:
    """A WG_CMD_GET_DEVICE answer as the kernel sends it (encoded, then decoded as pyroute2 reads it)."""
    msg = wgmsg()
    msg["cmd"] = 0
    msg["attrs"] = [["WGDEVICE_A_IFNAME", "mesh0"]]
    if device:
        msg["attrs"] += [["WGDEVICE_A_LISTEN_PORT", 51820], ["WGDEVICE_A_PUBLIC_KEY", {"value": DEVICE_KEY}]]
    msg["attrs"].append(["WGDEVICE_A_PEERS", [{"attrs": attrs} for attrs in peers]])
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def peer(public_key: str, ips: list[str], endpoint: dict | None = None, handshake: int = 0, keepalive: int = 0):
    attrs: list = [["WGPEER_A_PUBLIC_KEY", {"value": public_key}]]
    if endpoint:
        attrs.append(["WGPEER_A_ENDPOINT", endpoint])
    if handshake:
        attrs.append(["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": handshake, "tv_nsec": 7}])
    attrs += [["WGPEER_A_RX_BYTES", 10], ["WGPEER_A_TX_BYTES", 20],
              ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", keepalive],
              ["WGPEER_A_ALLOWEDIPS", AsyncWireGuard._wg_build_allowedips(None, ips)]]
    return attrs


def test_the_kernels_answer_reads_like_wg_show_dump():
    first = netlink_message([peer(KEY_A, ["100.64.0.2/32"], {"addr": "192.0.2.1", "port": 51820}, 1700000000, 25),
                             peer(KEY_B, ["100.64.0.3/32"], {"addr": "fd00::3", "port": 51821})])
    # A peer with more allowed IPs than fit is continued in the next message of the dump.
    second = netlink_message([peer(KEY_B, ["fd00:64::3/128"])], device=False)
    device = wg.device_of_netlink([first, second])
    assert (device.listen_port, device.public_key) == (51820, DEVICE_KEY)
    assert device.peers == (WgPeer(KEY_A, ("100.64.0.2/32",), "192.0.2.1:51820", 25),
                            WgPeer(KEY_B, ("100.64.0.3/32", "fd00:64::3/128"), "[fd00::3]:51821", 0))
    assert device.stats == (PeerStats(KEY_A, "192.0.2.1:51820", 1700000000, 10, 20),
                            PeerStats(KEY_B, "[fd00::3]:51821", 0, 10, 20))


def read_request(stream) -> bytes | None:
    """Lines up to the empty one that ends a UAPI request (None: the connection closed first)."""
    lines = []
    while (line := stream.readline()) != b"\n":
        if not line:
            return None
        lines.append(line)
    return b"".join(lines) + b"\n"


class FakeWireguardGo:
    """A UAPI socket answering each request with the next canned answer (and recording requests);
    like wireguard-go, it closes the connection after a request that failed."""

    def __init__(self, path: str, answers: list[bytes]):
        self.answers, self.requests, self.connections = list(answers), [], 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.answers:
            conn, _ = self.server.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as stream:
                while self.answers:
                    request = read_request(stream)
                    if request is None:
                        break  # the client closed the connection
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    conn.sendall(answer)
                    if answer != b"errno=0\n\n" and request.startswith(b"set"):
                        break


@pytest.fixture
def sockets(tmp_path, monkeypatch):
    monkeypatch.setattr(wg, "SOCKET_DIR", tmp_path)
    return tmp_path


def get_answer() -> bytes:
    private = base64.b64decode(DEVICE_KEY).hex()  # any 32 bytes serve as a private key
    return (f"private_key={private}\nlisten_port=51820\npublic_key={uapi.to_hex(KEY_A)}\n"
            "endpoint=192.0.2.1:51820\nlast_handshake_time_sec=1700000000\nrx_bytes=5\ntx_bytes=6\n"
            "persistent_keepalive_interval=25\nallowed_ip=100.64.0.2/32\nerrno=0\n\n").encode()


def test_a_userspace_interface_is_read_on_its_socket(sockets):
    fake = FakeWireguardGo(str(sockets / "mesh0.sock"), [get_answer()])
    device = wg.device("mesh0")
    assert fake.requests == [b"get=1\n\n"]
    assert device.listen_port == 51820 and device.peers == (WgPeer(KEY_A, ("100.64.0.2/32",), "192.0.2.1:51820", 25),)
    assert device.stats == (PeerStats(KEY_A, "192.0.2.1:51820", 1700000000, 5, 6),)


def test_requests_share_a_connection_until_one_fails_and_the_failure_says_why(sockets):
    fake = FakeWireguardGo(str(sockets / "mesh0.sock"), [b"errno=0\n\n", b"errno=-22\n\n", b"errno=0\n\n"])
    with wg.Uapi("mesh0") as connection:
        connection.set(uapi.remove_peer(KEY_A))
        with pytest.raises(wg.WgError, match=f"errno=-22 \\({os.strerror(22)}\\)"):
            connection.set(uapi.set_peer(WgPeer(KEY_B, ("100.64.0.3/32",), None, 25)))
        connection.set(uapi.remove_peer(KEY_B))
    assert len(fake.requests) == 3 and fake.connections == 2


def test_no_socket_and_no_kernel_interface_is_no_device(sockets, monkeypatch):
    monkeypatch.setattr(wg, "kernel_device", lambda interface: None)
    assert wg.device("mesh0") is None and wg.peer_stats("mesh0") == ()
    with pytest.raises(wg.WgError), wg.Uapi("mesh0") as connection:
        connection.get()

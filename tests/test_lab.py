"""The lab itself: kernel limits that fit every lab host's neighbours, and sites (routed and NAT
routers) that behave as the tests relying on them expect."""
import socket
import subprocess
import sys
import time

import pytest

from testbed import lab as labs
from testbed import nft
from testbed.lab import NEIGHBOUR_KNOBS, neighbour_room, site_lan
from testbed.meshlab import lab_marks
from testbed.nft import cut_ruleset


def test_a_handful_of_hosts_keeps_the_kernel_defaults():
    room = neighbour_room(5)
    assert room[NEIGHBOUR_KNOBS[2]] == 1024 and room[NEIGHBOUR_KNOBS[0]] == 128


def test_fifty_hosts_get_room_for_every_pair_in_both_families():
    room = neighbour_room(52)  # 50 nodes, the control host and this machine
    for family in ("ipv4", "ipv6"):
        hard = room[f"/proc/sys/net/{family}/neigh/default/gc_thresh3"]
        soft = room[f"/proc/sys/net/{family}/neigh/default/gc_thresh2"]
        assert hard >= 2 * 52 * 52 and soft >= 52 * 52


# Sites: routed and NAT routers between the public bridge and their LANs.

def test_sites_get_distinct_lans_derived_from_the_labs_subnet():
    assert [site_lan(77, index) for index in (1, 2, 3)] == ["10.214.77.0/24", "10.215.77.0/24", "10.216.77.0/24"]
    assert site_lan(77, 1) != site_lan(78, 1)
    with pytest.raises(ValueError):
        site_lan(77, 43)


def test_a_cut_drops_udp_both_ways_and_an_empty_one_only_removes_the_table():
    rules = cut_ruleset(["10.213.5.201", "10.213.5.3", "10.213.5.3"])
    assert "ip saddr { 10.213.5.201, 10.213.5.3 } meta l4proto udp drop" in rules
    assert "ip daddr { 10.213.5.201, 10.213.5.3 } meta l4proto udp drop" in rules
    assert cut_ruleset([]).split("\n") == ["table inet meshvpn_lab_cut", "delete table inet meshvpn_lab_cut", ""]


def test_a_nat_router_masquerades_port_preserving_and_drops_new_inbound():
    rules = nft.nat_ruleset()
    assert 'oifname "wan" masquerade\n' in rules  # no random/fully-random: the source port stays
    assert 'iifname "wan" ct state new drop' in rules and "policy drop" in rules
    assert "22" not in rules  # management SSH only where asked for
    assert 'ip saddr 10.213.77.254 tcp dport 22 ct state new accept' in nft.nat_ruleset("10.213.77.254")


LISTEN = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.settimeout(float(sys.argv[2]))
try:
    data, peer = sock.recvfrom(100)
except TimeoutError:
    sys.exit(1)
print(f"{peer[0]}:{peer[1]}", flush=True)
sock.sendto(b"pong", peer)
"""

# Send from a port to a target every 0.2 s until something arrives, then `linger` more times (so the
# other side, punching too, hears us after its NAT has its mapping); print who answered.
PEER = """
import socket, sys
port, target, tries, linger = int(sys.argv[1]), (sys.argv[2], int(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", port))
sock.settimeout(0.2)
heard = None
for _ in range(tries):
    sock.sendto(b"ping", target)
    try:
        heard = heard or sock.recvfrom(100)[1]
    except TimeoutError:
        pass
    if heard is not None:
        if linger == 0:
            break
        linger -= 1
if heard is None:
    sys.exit(1)
print(f"{heard[0]}:{heard[1]}", flush=True)
"""

CONNECT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
"""


def in_host(host: labs.Host, script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([*host.prefix(), sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out.strip()


def udp(sender: labs.Host, receiver: labs.Host, to: str, port: int = 51820, tries: int = 10) -> tuple[str, str]:
    """A datagram from sender's port 51820 to `to`:7000 where receiver listens: (what the receiver saw,
    who answered the sender), '' where nothing arrived."""
    listener = in_host(receiver, LISTEN, 7000, tries * 0.2 + 1)
    time.sleep(0.3)  # bound
    _, answered = finished(in_host(sender, PEER, port, to, 7000, tries, 0))
    _, seen = finished(listener)
    return seen, answered


class TestSites:
    pytestmark = lab_marks()

    def test_a_routed_host_and_a_public_host_reach_each_other(self, lab):
        site = lab.add_site("office", "routed")
        inside = lab.add_host("inside", site)
        public = lab.add_host("public")  # added after the site: it gets the route too
        assert inside.site is site and public.site is None and lab.seen_as(inside) == inside.address
        assert inside.ping(public.address).returncode == 0
        assert public.ping(inside.address).returncode == 0
        assert inside.ping(lab.gateway).returncode == 0
        assert udp(inside, public, public.address) == (f"{inside.address}:51820", f"{public.address}:7000")

    def test_a_natted_host_is_seen_as_its_routers_wan_address_and_keeps_its_port(self, lab):
        home = lab.add_site("home", "nat")
        natted, public = lab.add_host("natted", home), lab.add_host("public")
        assert lab.seen_as(natted) == home.wan != natted.address
        assert natted.ping(public.address).returncode == 0
        assert natted.ping(lab.gateway).returncode == 0
        assert udp(natted, public, public.address) == (f"{home.wan}:51820", f"{public.address}:7000")

    def test_nobody_outside_reaches_a_natted_hosts_private_address(self, lab):
        home = lab.add_site("home", "nat")
        natted, public = lab.add_host("natted", home), lab.add_host("public")
        assert public.ping(natted.address, count=1).returncode != 0  # no route
        public.run("ip", "route", "add", home.lan, "via", home.wan)
        assert public.ping(natted.address, count=1).returncode != 0  # routed there, the NAT drops it
        assert udp(public, natted, natted.address, tries=3)[0] == ""

    def test_two_natted_hosts_punch_through_their_nats_on_port_51820(self, lab):
        one, two = lab.add_site("one", "nat"), lab.add_site("two", "nat")
        a, b = lab.add_host("a", one), lab.add_host("b", two)
        first = in_host(a, PEER, 51820, lab.seen_as(b), 51820, 40, 5)
        time.sleep(0.5)  # a's first datagrams reach two's NAT unsolicited: they must not take b's port
        punches = [first, in_host(b, PEER, 51820, lab.seen_as(a), 51820, 40, 5)]
        assert [finished(proc) for proc in punches] == [(0, f"{two.wan}:51820"), (0, f"{one.wan}:51820")]

    def test_a_cut_stops_udp_between_two_hosts_but_not_their_way_to_the_root_namespace(self, lab):
        home = lab.add_site("home", "nat")
        a, b, c = lab.add_host("a"), lab.add_host("b"), lab.add_host("c", home)
        root = socket.create_server((lab.gateway, 0))
        try:
            lab.cut(a, b)
            lab.cut(a, b)  # idempotent
            lab.cut(a, c)
            assert udp(b, a, a.address, tries=3)[0] == "" and udp(a, b, b.address, tries=3)[0] == ""
            assert udp(c, a, a.address, tries=3)[0] == ""  # c is seen as its NAT: a drops that too
            for host in (a, b, c):
                assert host.ping(lab.gateway, count=1).returncode == 0
                assert finished(in_host(host, CONNECT, lab.gateway, root.getsockname()[1]))[0] == 0
            lab.heal(a, b)
            lab.heal(a, b)
            assert udp(b, a, a.address)[0] == f"{b.address}:51820"
            assert udp(c, a, a.address, tries=3)[0] == ""  # still cut
            lab.heal(a, c)
            assert udp(c, a, a.address)[0] == f"{home.wan}:51820"
        finally:
            root.close()

    def test_closing_the_lab_removes_routers_and_routes(self):
        with labs.Lab() as lab:
            site = lab.add_site("office", "routed")
            lab.add_site("home", "nat")
            lab.add_host("inside", site)
        assert site.lan not in labs.sh("ip", "route").stdout
        assert f"mvt{lab.tag}" not in labs.sh("ip", "netns", "list").stdout

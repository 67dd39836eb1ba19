"""Parsing `wg show IFACE dump`."""
from agent.model import PeerStats, WgPeer
from agent.wg import parse_dump

DUMP = ("PRIV\tPUB\t51820\toff\n"
        "KEYA\t(none)\t192.0.2.1:51820\t100.64.0.3/32,100.64.0.2/32\t1700000000\t10\t20\t25\n"
        "KEYB\t(none)\t(none)\t(none)\t0\t0\t0\toff\n")


def test_a_dump_reads_into_peers_and_counters():
    dump = parse_dump(DUMP)
    assert (dump.listen_port, dump.public_key) == (51820, "PUB")
    assert dump.peers == (WgPeer("KEYA", ("100.64.0.2/32", "100.64.0.3/32"), "192.0.2.1:51820", 25),
                          WgPeer("KEYB", (), None, 0))
    assert dump.stats == (PeerStats("KEYA", "192.0.2.1:51820", 1700000000, 10, 20), PeerStats("KEYB", None, 0, 0, 0))


def test_an_empty_dump_or_an_interface_without_a_port():
    assert parse_dump("").peers == () and parse_dump("").listen_port is None
    assert parse_dump("(none)\t(none)\t0\toff\n").public_key is None

"""The lab's kernel limits: the neighbour table must fit every lab host's neighbours."""
from tests.lab import NEIGHBOUR_KNOBS, neighbour_room


def test_a_handful_of_hosts_keeps_the_kernel_defaults():
    room = neighbour_room(5)
    assert room[NEIGHBOUR_KNOBS[2]] == 1024 and room[NEIGHBOUR_KNOBS[0]] == 128


def test_fifty_hosts_get_room_for_every_pair_in_both_families():
    room = neighbour_room(52)  # 50 nodes, the control host and this machine
    for family in ("ipv4", "ipv6"):
        hard = room[f"/proc/sys/net/{family}/neigh/default/gc_thresh3"]
        soft = room[f"/proc/sys/net/{family}/neigh/default/gc_thresh2"]
        assert hard >= 2 * 52 * 52 and soft >= 52 * 52

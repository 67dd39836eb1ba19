import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.rules import ipam


def test_first_address_skips_network_address():
    assert ipam.next_free_ip(ipam.parse_prefix("100.64.0.0/10"), []) == "100.64.0.1"


def test_fills_the_lowest_gap():
    prefix = ipam.parse_prefix("10.0.0.0/24")
    assert ipam.next_free_ip(prefix, ["10.0.0.1", "10.0.0.3"]) == "10.0.0.2"


def test_exhaustion_never_hands_out_broadcast():
    prefix = ipam.parse_prefix("10.0.0.0/30")
    assert ipam.next_free_ip(prefix, ["10.0.0.1"]) == "10.0.0.2"
    with pytest.raises(ipam.AddressExhausted):
        ipam.next_free_ip(prefix, ["10.0.0.1", "10.0.0.2"])


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "10.0.0.0/31", "10.0.0.0/32", "bogus", "10.0.0.0/33"])
def test_rejects_bad_prefixes(cidr):
    with pytest.raises(ValueError):
        ipam.parse_prefix(cidr)


@given(st.integers(min_value=22, max_value=29), st.data())
def test_allocation_is_unique_and_inside_the_assignable_range(bits, data):
    prefix = ipam.parse_prefix(f"10.20.0.0/{bits}")
    hosts = [str(ip) for ip in prefix.hosts()]
    used = data.draw(st.sets(st.sampled_from(hosts), max_size=len(hosts) - 1))
    ip = ipam.next_free_ip(prefix, used)
    assert ip not in used
    assert ipaddress.ip_address(ip) in prefix
    assert ip not in (str(prefix.network_address), str(prefix.broadcast_address))
    assert ip == min((h for h in hosts if h not in used), key=lambda h: ipaddress.ip_address(h))


def test_after_walks_up_and_stops_at_the_last_assignable_address():
    prefix = ipam.parse_prefix("10.0.0.0/30")
    assert ipam.after(prefix, None) == "10.0.0.1"
    assert ipam.after(prefix, "10.0.0.1") == "10.0.0.2"
    assert ipam.after(prefix, "10.0.0.2") is None
    assert ipam.after(ipam.parse_prefix("10.1.0.0/24"), "10.0.0.7") is None  # CIDR changed since

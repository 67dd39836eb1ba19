"""Reading meshvpn's routes out of an rtnetlink route dump (messages built as the kernel sends them)."""
import errno
import ipaddress
import struct

import pytest

from agent.observe import (
    HEADER,
    MAIN_TABLE,
    NLMSG_DONE,
    NLMSG_ERROR,
    ROUTE_PROTO,
    RTA_DST,
    RTA_OIF,
    RTA_TABLE,
    RTM_NEWROUTE,
    RTMSG,
    our_routes,
)


def attribute(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def route(dst: str, dst_len: int, oif: int, proto: int = ROUTE_PROTO, table: int = MAIN_TABLE,
          big_table: int | None = None) -> bytes:
    address = ipaddress.ip_address(dst)
    body = RTMSG.pack(10 if address.version == 6 else 2, dst_len, 0, 0, table, proto, 0, 1, 0)
    body += attribute(RTA_TABLE, struct.pack("=I", big_table if big_table is not None else table))
    body += attribute(RTA_DST, address.packed) + attribute(RTA_OIF, struct.pack("=I", oif))
    return HEADER.pack(HEADER.size + len(body), RTM_NEWROUTE, 2, 1, 0) + body


def done() -> bytes:
    return HEADER.pack(HEADER.size + 4, NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)


def test_only_our_routes_via_the_interface_in_the_main_table_are_ours():
    data = (route("100.64.0.2", 32, 7) + route("fd00:64::2", 128, 7) + route("100.64.0.3", 32, 7, proto=4)
            + route("100.64.0.4", 32, 8) + route("100.64.0.5", 32, 7, table=252, big_table=1000))
    assert our_routes(data, 7) == ({"100.64.0.2/32", "fd00:64::2/128"}, False)
    assert our_routes(data + done(), 7) == ({"100.64.0.2/32", "fd00:64::2/128"}, True)


def test_a_route_without_a_destination_is_not_one_of_ours():
    body = RTMSG.pack(2, 0, 0, 0, MAIN_TABLE, ROUTE_PROTO, 0, 1, 0) + attribute(RTA_OIF, struct.pack("=I", 7))
    assert our_routes(HEADER.pack(HEADER.size + len(body), RTM_NEWROUTE, 2, 1, 0) + body, 7) == (set(), False)


def test_an_error_answer_raises_with_its_errno():
    error = HEADER.pack(HEADER.size + 4, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EPERM)
    with pytest.raises(OSError) as raised:
        our_routes(error, 7)
    assert raised.value.errno == errno.EPERM

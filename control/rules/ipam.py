"""Mesh IP allocation: pure functions over a prefix and the set of used addresses.

Owns the rule for which addresses may be handed out: the address after the last one allocated
(`after`), so a freed address stays out of use until the prefix wraps, and the lowest free one
(`next_free_ip`) when that one is taken or past the end. No database, no I/O: the registry passes
in what is used and the store enforces uniqueness with a constraint.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from meshcommon.contract.addresses import Network


class AddressExhausted(Exception):
    """Every assignable address of the mesh prefix is taken."""

    def __init__(self, prefix: Network):
        super().__init__(f"no free mesh IP left in {prefix}")
        self.prefix = prefix


def parse_prefix(cidr: str) -> Network:
    """Parse a mesh CIDR, rejecting host bits and prefixes too small for two nodes."""
    try:
        prefix = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise ValueError(f"invalid mesh CIDR {cidr!r}: {exc}") from None
    if prefix.num_addresses < 4:
        raise ValueError(f"mesh CIDR {cidr} is too small: it must hold at least two nodes")
    return prefix


def assignable_range(prefix: Network) -> tuple[int, int]:
    """First and last assignable address as integers: never network nor broadcast."""
    return int(prefix.network_address) + 1, int(prefix.broadcast_address) - 1


def next_free_ip(prefix: Network, used: Iterable[str]) -> str:
    """Lowest assignable address of `prefix` not in `used`.

    The fallback of `after`; the database's unique constraint, not this function, settles
    concurrent picks.
    """
    first, last = assignable_range(prefix)
    taken = set()
    for text in used:
        value = int(ipaddress.ip_address(text))
        if first <= value <= last:
            taken.add(value)
    candidate = first
    for value in sorted(taken):
        if value != candidate:
            break
        candidate += 1
    if candidate > last:
        raise AddressExhausted(prefix)
    return str(ipaddress.ip_address(candidate))


def after(prefix: Network, last: str | None) -> str | None:
    """The address after `last` (the first assignable one when None), or None past the end.

    Allocating upward from the last allocation keeps a freed address out of use until the
    prefix wraps, so a peer still holding a removed node's config cannot meet a new node
    under the same IP, and allocation stays O(1) in the common case.
    """
    first, end = assignable_range(prefix)
    if last is None:
        return str(ipaddress.ip_address(first))
    value = int(ipaddress.ip_address(last)) + 1
    if value < first or value > end:
        return None
    return str(ipaddress.ip_address(value))


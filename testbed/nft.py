"""The lab's nftables rules as `nft -f` text (pure): a NAT site's router, and a cut between hosts.

One definition for both labs: the pytest lab (`testbed.lab`) imports it, and the Ansible lab's
module (roles/meshvpn_lab/library/meshvpn_labhost.py) as `ansible.module_utils.meshvpn_lab_nft`,
which is this file (roles/meshvpn_lab/module_utils/meshvpn_lab_nft.py links to it). So it imports
nothing but the standard library and runs on any Python Ansible runs modules with.
"""

from collections.abc import Iterable

NAT_TABLE = "meshvpn_lab"


def nat_ruleset(management=None):
    """The nftables table of a NAT site's router (links `wan` and `lan`), as `nft -f` reads it.

    Masquerade keeps the source port when it is free (no random/fully-random): two nodes behind
    different NATs then reach each other once both have sent. New connections to the router itself
    from outside are dropped in input, before conntrack confirms them: an unsolicited datagram to
    the router's port P would otherwise hold the mapping that a LAN host's first datagram from P
    needs, and masquerade would pick another port. `management` (an address) may open SSH to LAN
    hosts, and replies from port 22 to it leave unmasqueraded even when conntrack picks such a
    connection up mid-stream (a fresh router), so SSH keeps its addresses."""
    exempt = f'    oifname "wan" ip daddr {management} tcp sport 22 accept\n' if management else ""
    admit = f'    iifname "wan" ip saddr {management} tcp dport 22 ct state new accept\n' if management else ""
    return (f"table ip {NAT_TABLE} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"{exempt}"
            '    oifname "wan" masquerade\n'
            "  }\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy drop;\n"
            "    ct state established,related accept\n"
            '    iifname "lan" accept\n'
            f"{admit}"
            "  }\n"
            "  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            '    iifname "wan" ct state new drop\n'
            "  }\n"
            "}\n")


def replace_table(family, table, text):
    """An `nft -f` transaction that replaces (or, with text empty, removes) one table atomically."""
    return f"table {family} {table}\ndelete table {family} {table}\n{text}"


CUT_TABLE = "meshvpn_lab_cut"


def cut_ruleset(addresses: Iterable[str]) -> str:
    """`nft -f` input for one host's namespace: drop UDP to and from `addresses` (none: no table)."""
    found = sorted(set(addresses))
    if not found:
        return replace_table("inet", CUT_TABLE, "")
    them = "{ " + ", ".join(found) + " }"
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority filter;\n"
                     f"    ip {side} {them} meta l4proto udp drop\n  }}\n"
                     for hook, side in (("input", "saddr"), ("output", "daddr")))
    return replace_table("inet", CUT_TABLE, f"table inet {CUT_TABLE} {{\n{chains}}}\n")


CHAOS_TABLE = "meshvpn_lab_chaos"


def chaos_ruleset(loss_in=0, loss_out=0, blocked=()):
    """`nft -f` input for one host's namespace under the chaos soak: drop `loss_in` percent of the UDP
    it receives and `loss_out` percent of what it sends (at random), and every packet to the
    control plane instances in `blocked` ((address, TCP port) pairs); nothing asked: no table."""
    rules: dict = {"input": [], "output": []}
    if loss_in:
        rules["input"].append(f"meta l4proto udp numgen random mod 100 < {loss_in} drop")
    if loss_out:
        rules["output"].append(f"meta l4proto udp numgen random mod 100 < {loss_out} drop")
    for address, port in blocked:  # both ways: an open stream's pushes stop too
        rules["output"].append(f"ip daddr {address} tcp dport {port} drop")
        rules["input"].append(f"ip saddr {address} tcp sport {port} drop")
    if not any(rules.values()):
        return replace_table("inet", CHAOS_TABLE, "")
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority filter;\n"
                     + "".join(f"    {rule}\n" for rule in hook_rules) + "  }\n"
                     for hook, hook_rules in rules.items() if hook_rules)
    return replace_table("inet", CHAOS_TABLE, f"table inet {CHAOS_TABLE} {{\n{chains}}}\n")

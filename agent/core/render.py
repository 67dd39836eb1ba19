"""Rendering the wg(8) configuration (the `wg syncconf` format) from a DesiredState. Pure.

Owns the config file's text (with `templates/wg.conf.j2`). Names are display text from the
network: they only ever appear in a comment, reduced to a safe alphabet, so no name can inject a
line (let alone a [Peer]). Must not do I/O beyond loading its template.
"""
from __future__ import annotations

import functools
import re

from agent.core.model import DesiredState

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@functools.cache
def template():
    # jinja2 is loaded with the first config to render, not with the agent: a pass with nothing new renders none.
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("agent", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["comment"] = lambda text: UNSAFE.sub("?", str(text))[:63] or "?"
    return env.get_template("wg.conf.j2")


def render(desired: DesiredState, private_key: str, revision: int) -> str:
    return template().render(
        interface=desired.interface, revision=revision, private_key=private_key,
        listen_port=desired.listen_port, peers=desired.peers)

"""Rendering the wg(8) configuration (the `wg syncconf` format) from a DesiredState. Pure.

Owns the config file's text (with `templates/wg.conf.j2`). Names are display text from the
network: they only ever appear in a comment, reduced to a safe alphabet, so no name can inject a
line (let alone a [Peer]). Must not do I/O beyond loading its template.
"""
from __future__ import annotations

import re

import jinja2

from agent.model import DesiredState

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
ENV = jinja2.Environment(loader=jinja2.PackageLoader("agent", "templates"), autoescape=False,
                         undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                         trim_blocks=True, lstrip_blocks=True)
ENV.filters["comment"] = lambda text: UNSAFE.sub("?", str(text))[:63] or "?"


def render(desired: DesiredState, private_key: str, revision: int) -> str:
    return ENV.get_template("wg.conf.j2").render(
        interface=desired.interface, revision=revision, private_key=private_key,
        listen_port=desired.listen_port, peers=desired.peers)

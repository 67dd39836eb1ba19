"""PATCH /v1/nodes/{node_id}: an admin renames a node; one revision, every peer sees it, and the
node's re-registrations keep it. On SQLite and on a real PostgreSQL."""
import logging

import pytest

from testbed.enrol import new_key
from tests.control.support import bearer

pytestmark = pytest.mark.anyio


async def rename(control, node_id: str, body: dict, headers: dict | None = None):
    return await control.client.simulate_patch(f"/v1/nodes/{node_id}", json=body,
                                               headers=control.admin if headers is None else headers)


async def test_a_rename_is_one_revision_that_every_peer_sees_and_is_logged(control, caplog):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "alpha"), await control.node(token, "beta")
    revision = (await control.netmap(a)).json["revision"]
    with caplog.at_level(logging.INFO, logger="meshvpn"):
        renamed = await rename(control, b["node_id"], {"name": "gateway-1"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json["name"], renamed.json["changed_revision"]) == ("gateway-1", revision + 1)
    delta = (await control.netmap(a, since=revision)).json
    assert [(peer["node_id"], peer["name"]) for peer in delta["upserted"]] == [(b["node_id"], "gateway-1")]
    [line] = [r for r in caplog.records if r.getMessage() == "node_renamed"]
    assert (line.node, line.node_name, line.before, line.revision) == (b["node_id"], "gateway-1", "beta", revision + 1)
    again = await rename(control, b["node_id"], {"name": "gateway-1"})
    assert again.json["changed_revision"] == revision + 1  # the same name again: no bump


async def test_the_nodes_re_registrations_keep_the_admins_name(control):
    token = await control.join_token()
    key = new_key()
    node = await control.node(token, "alpha", key=key, endpoint="192.0.2.1:51820")
    assert (await rename(control, node["node_id"], {"name": "renamed"})).status_code == 200
    again = await control.register(node["node_token"], "alpha", key=key, endpoint="192.0.2.9:51820")
    assert again.status_code == 200
    shown = await control.client.simulate_get(f"/v1/nodes/{node['node_id']}", headers=control.admin)
    assert (shown.json["name"], shown.json["endpoint"]) == ("renamed", "192.0.2.9:51820")


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "has space"}, {"name": "x" * 64}, {"name": "a\n"},
                                  {"name": "ok", "extra": 1}, {}])
async def test_a_name_registration_would_refuse_is_refused(control, body):
    node = await control.node(await control.join_token(), "alpha")
    answer = await rename(control, node["node_id"], body)
    assert answer.status_code == 400, answer.text


async def test_only_the_admin_renames_and_only_nodes_that_exist(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "alpha"), await control.node(token, "beta")
    assert (await rename(control, b["node_id"], {"name": "mine"}, headers=bearer(a))).status_code == 401
    assert (await rename(control, b["node_id"], {"name": "mine"}, headers=bearer(b))).status_code == 401
    assert (await rename(control, "nosuchnode", {"name": "x"})).status_code == 404

"""Upgrades: a store left at any migration, holding data, reaches the latest schema and keeps working.

Migration files are discovered, so every migration added later is covered
without touching this file. Runs on SQLite and on a real PostgreSQL.
"""
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from falcon import testing
from peewee import Table
from playhouse.migrations import Migration, Runner

from control import config
from control.api.app import create_app
from control.live.runtime import Runtime
from control.rules import tokens
from control.store import db
from testbed.enrol import new_key
from tests.control.support import Control, FakeClock

pytestmark = pytest.mark.anyio

MIGRATIONS = [m.name for m in Migration.load_directory(str(db.MIGRATIONS))]
JOIN_TOKEN = tokens.new_token(tokens.JOIN)
EXISTING_IPS = ("100.64.0.1", "100.64.0.5")
NOW = FakeClock().now


def seed(database) -> None:
    """Data as a running control plane leaves it, in columns the released 0001 already had."""
    mesh_state, node = Table("mesh_state").bind(database), Table("node").bind(database)
    change, join_token = Table("change").bind(database), Table("join_token").bind(database)
    # 0004 replaced peer_health by tunnels_down: fill in whichever the store has.
    columns = {c.name for c in database.get_columns("node")}
    legacy = {column: "[]" for column in ("peer_health", "tunnels_down") if column in columns}
    for revision, ip in enumerate(EXISTING_IPS, start=1):
        node_id = f"n{revision}"
        node.insert(id=node_id, name=node_id, public_key=new_key(), mesh_ip=ip, endpoint=None,
                    listen_port=51820, token_hash=tokens.digest(tokens.new_token(tokens.NODE)),
                    created_at=NOW, last_seen=NOW, online=True, applied_revision=None,
                    changed_revision=revision, **legacy).execute()
        change.insert(revision=revision, node_id=node_id).execute()
    mesh_state.update(revision=len(EXISTING_IPS)).where(mesh_state.c.id == 1).execute()
    join_token.insert(id="t1", token_hash=tokens.digest(JOIN_TOKEN), reusable=True, description="old",
                      created_at=NOW, expires_at=None, revoked_at=None, uses=0).execute()


def store_at(url: str, last: str) -> None:
    """A store with the migrations up to and including `last` applied, then seeded."""
    database = db.connect(url)
    Runner(database, str(db.MIGRATIONS)).up(target=last)
    seed(database)
    database.close()


def edited_0001_store(url: str) -> None:
    """A store made by 0001 as commit b851c50 had edited it: `last_ip` created, only 0001 recorded."""
    released = next(m for m in Migration.load_directory(str(db.MIGRATIONS)) if m.name == "0001_initial")
    source = Path(released.path).read_text()
    anchor = "        horizon = BigIntegerField(default=0)\n"
    assert source.count(anchor) == 1
    edited = source.replace(anchor, anchor + "        last_ip = CharField(max_length=45, null=True)\n")
    namespace: dict = {}
    exec(compile(edited, "0001_initial_edited", "exec"), namespace)  # our own migration file
    database = db.connect(url)
    runner = Runner(database, str(db.MIGRATIONS))
    with runner.migrator.migration_context():
        namespace["up"](runner.migrator, database)
    runner.fake(target="0001_initial")
    seed(database)
    database.close()


@asynccontextmanager
async def upgraded(url: str, state_dir):
    """The control plane as it starts on `url`: migrations first, then the app (as the `control` fixture)."""
    cfg = config.load(env={}, state_dir=state_dir, db=url, cidr="100.64.0.0/24")
    db.connect(cfg.db_url)
    db.migrate()
    clock = FakeClock()
    runtime = Runtime(cfg, clock=clock, sweeper=False)
    try:
        async with testing.ASGIConductor(create_app(cfg, runtime)) as client:
            yield Control(client, runtime, clock)
    finally:
        db.db.close()


async def register_after_upgrade(url: str, state_dir) -> dict:
    """Upgrade, then register a node with the old join token; checks what every upgrade must keep."""
    async with upgraded(url, state_dir) as control:
        assert set(Runner(db.db.obj, str(db.MIGRATIONS)).applied()) == set(MIGRATIONS)
        node = await control.node(JOIN_TOKEN, "newcomer")
        assert node["mesh_ip"] not in EXISTING_IPS
        assert node["revision"] > len(EXISTING_IPS)
        listed = (await control.client.simulate_get("/v1/nodes", headers=control.admin)).json
        assert sorted(n["mesh_ip"] for n in listed["nodes"]) == sorted([*EXISTING_IPS, node["mesh_ip"]])
        return node


def test_migrations_are_numbered_without_gaps():
    assert [int(name[:4]) for name in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


@pytest.mark.parametrize("last", MIGRATIONS)
async def test_a_store_left_at_any_migration_upgrades_and_allocates_free_ips(store_url, tmp_path, last):
    store_at(store_url, last)
    await register_after_upgrade(store_url, tmp_path / "state")


async def test_a_store_made_by_the_edited_0001_upgrades(store_url, tmp_path):
    edited_0001_store(store_url)
    await register_after_upgrade(store_url, tmp_path / "state")


async def test_a_released_0001_store_keeps_allocating_above_the_highest_mesh_ip(store_url, tmp_path):
    store_at(store_url, "0001_initial")
    node = await register_after_upgrade(store_url, tmp_path / "state")
    assert node["mesh_ip"] == "100.64.0.6"  # never the freed-looking hole at .2

"""Secrets at rest on the control plane: start-up (in-process) makes the state dir 0700 and the
SQLite files 0600, and refuses an admin token file others could read or replace."""
import os
import sqlite3
import stat

import pytest

from control import config
from control.cli import meshctl as cli
from control.rules.tokens import UnsafeSecretFile
from control.serve import process as server
from control.store import db


@pytest.fixture(autouse=True)
def restore_umask():
    """prepare() sets the process umask, as the server needs; give the test process its own back."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def sqlite_files(state_dir) -> list:
    return [state_dir / name for name in ("control.db", "control.db-wal", "control.db-shm")]


def test_a_fresh_state_dir_store_and_admin_token_are_private(tmp_path):
    state_dir = tmp_path / "state"
    cfg = config.load(env={}, state_dir=state_dir)
    server.prepare(cfg)
    assert mode(state_dir) == 0o700 and mode(cfg.admin_token_path) == 0o600
    db.connect(cfg.db_url)
    try:
        db.db.execute_sql("UPDATE mesh_state SET revision = revision")  # WAL mode: -wal and -shm exist now
        assert [mode(path) for path in sqlite_files(state_dir)] == [0o600] * 3
    finally:
        db.db.close()


def test_a_loose_existing_state_dir_and_store_are_tightened_at_start(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    keeper = sqlite3.connect(state_dir / "control.db")  # keeps -wal and -shm in place, as a live store has
    try:
        keeper.execute("PRAGMA journal_mode=wal")
        keeper.execute("CREATE TABLE left_over (x)")
        keeper.commit()
        for path in [state_dir, *sqlite_files(state_dir)]:
            path.chmod(0o755 if path == state_dir else 0o644)
        server.prepare(config.load(env={}, state_dir=state_dir))
        assert mode(state_dir) == 0o700
        assert [mode(path) for path in sqlite_files(state_dir)] == [0o600] * 3
    finally:
        keeper.close()


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_an_admin_token_others_can_access_stops_start_up_before_the_store_is_touched(tmp_path, loose):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    token = state_dir / "admin.token"
    token.write_text("mva_secret\n")
    token.chmod(loose)
    with pytest.raises(UnsafeSecretFile) as refused:
        server.prepare(config.load(env={}, state_dir=state_dir))
    assert str(token) in str(refused.value) and f"mode {loose:04o}" in str(refused.value)
    assert not (state_dir / "control.db").exists()
    assert mode(token) == loose  # reported, never silently "fixed"


def test_an_admin_token_owned_by_another_user_stops_start_up(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    token = tmp_path / "admin.token"
    token.write_text("mva_secret\n")
    token.chmod(0o600)
    os.chown(token, 65534, 65534)
    with pytest.raises(UnsafeSecretFile, match="owned by uid 65534"):
        server.prepare(config.load(env={}, state_dir=tmp_path / "state", admin_token_file=token))


def test_meshctl_names_the_file_and_its_mode_and_fails(tmp_path, capsys):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    token = state_dir / "admin.token"
    token.write_text("mva_secret\n")
    token.chmod(0o644)
    assert cli.main(["migrate", "--state-dir", str(state_dir)]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("meshctl migrate: refusing to use") and str(token) in err and "0644" in err

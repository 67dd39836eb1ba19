"""Secrets: token kinds, hashes, and the admin token file that only its user may read (in-process)."""
import os
import stat

import pytest

from control.rules import tokens


def test_tokens_carry_their_kind_and_only_a_hash_is_compared():
    token = tokens.new_token(tokens.JOIN)
    assert token.startswith("mvj_") and tokens.new_token(tokens.JOIN) != token
    assert tokens.digest(token) == tokens.digest(token) and len(tokens.digest(token)) == 64
    assert tokens.same_secret(token, token) and not tokens.same_secret(token, token + "x")


def test_the_admin_token_file_is_created_private_once_and_then_reused(tmp_path):
    path = tmp_path / "state" / "admin.token"
    token = tokens.ensure_admin_token(path)
    assert token.startswith("mva_") and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.ensure_admin_token(path) == token
    assert [p.name for p in path.parent.iterdir()] == ["admin.token"]  # no temporary file left behind


def test_a_secret_file_others_can_access_is_refused(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("mva_secret\n")
    path.chmod(0o640)
    with pytest.raises(tokens.UnsafeSecretFile, match="mode 0640"):
        tokens.read_private(path)


def test_why_a_secret_file_is_unsafe():
    mine = os.stat_result((stat.S_IFREG | 0o600, 0, 0, 1, 1000, 1000, 0, 0, 0, 0))
    assert tokens.unsafe_because(mine, 1000) is None
    assert "owned by uid 1000" in tokens.unsafe_because(mine, 0)
    loose = os.stat_result((stat.S_IFREG | 0o604, 0, 0, 1, 1000, 1000, 0, 0, 0, 0))
    assert "mode 0604" in tokens.unsafe_because(loose, 1000)

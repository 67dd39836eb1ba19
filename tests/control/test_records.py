"""Plain data with a rule of its own: a join token's state at a time (pure)."""
import pytest

from control.rules import ipam
from control.rules.records import JoinTokenRecord, RegistrySettings


def token(**extra) -> JoinTokenRecord:
    fields = {"id": "t1", "reusable": False, "description": "", "created_at": 0.0,
              "expires_at": 10.0, "revoked_at": None, "uses": 0}
    return JoinTokenRecord(**{**fields, **extra})


@pytest.mark.parametrize("extra, now, state", [
    ({}, 5.0, "active"), ({}, 10.0, "expired"), ({"expires_at": None}, 1e12, "active"),
    ({"uses": 1}, 5.0, "used"), ({"uses": 3, "reusable": True}, 5.0, "active"),
    ({"revoked_at": 1.0, "uses": 1}, 20.0, "revoked"), ({"uses": 1}, 20.0, "expired")])
def test_revoked_beats_expired_beats_used(extra, now, state):
    assert token(**extra).state_at(now) == state


def test_a_pause_longer_than_four_sweeps_or_two_seconds_is_an_outage():
    prefix = ipam.parse_prefix("100.64.0.0/24")
    assert RegistrySettings(prefix, sweep_interval=0.5).gap_limit == 2.0
    assert RegistrySettings(prefix, sweep_interval=1.0).gap_limit == 4.0

"""Request bodies at the edge (pure): strict, bounded, and as lenient as JSON Schema about integral floats."""
import pytest

from control.api import schemas
from testbed.enrol import new_key


def test_an_integral_float_is_an_integer_as_json_schema_says():
    body = b'{"applied_revision": 2.0, "tunnels_down": [{"node_id": "a", "down_for": 1, "reason": "no_traffic"}]}'
    beat = schemas.decode(body, schemas.HeartbeatBody)
    assert beat.applied_revision == 2 and isinstance(beat.applied_revision, int)
    with pytest.raises(ValueError, match="applied_revision"):
        schemas.decode(b'{"applied_revision": 2.5}', schemas.HeartbeatBody)


@pytest.mark.parametrize("body", [b"{", b'{"extra": 1}', b'{"name": "a\\n", "public_key": "%s"}',
                                  b'{"name": "a", "public_key": "%s", "nonce": "%s"}'])
def test_malformed_bodies_are_value_errors(body):
    key = new_key().encode()
    with pytest.raises(ValueError):
        schemas.decode(body.replace(b"%s", key), schemas.RegisterBody)


def test_defaults_fill_an_empty_body():
    created = schemas.decode(b"{}", schemas.JoinTokenCreateBody)
    assert (created.reusable, created.ttl_seconds, created.description) == (False, 3600.0, "")
    beat = schemas.decode(b"{}", schemas.HeartbeatBody)
    assert (beat.applied_revision, beat.tunnels_down) == (None, None)

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


@pytest.mark.parametrize("depth", [600, 10_000, 1_000_000])
@pytest.mark.parametrize("field", [b"name", b"listen_port", b"extra"])
def test_nesting_of_any_depth_is_a_value_error(depth, field):
    body = b'{"public_key": "%s", "%s": ' % (new_key().encode(), field) + b"[" * depth + b"1.0" + b"]" * depth + b"}"
    with pytest.raises(ValueError):
        schemas.decode(body, schemas.RegisterBody)
    with pytest.raises(ValueError):
        schemas.decode(b'{"applied_revision": 2.0, "tunnels_down": ' + b"[" * depth + b"]" * depth + b"}",
                       schemas.HeartbeatBody)


def test_the_integral_float_retry_says_what_else_is_wrong():
    with pytest.raises(ValueError, match="public_key"):
        schemas.decode(b'{"listen_port": 51820.0, "public_key": "x", "name": "a"}', schemas.RegisterBody)
    assert schemas.decode(b'{"applied_revision": 2e3}', schemas.HeartbeatBody).applied_revision == 2000
    with pytest.raises(ValueError, match="applied_revision"):
        schemas.decode(b'{"applied_revision": 2.5}', schemas.HeartbeatBody)

"""meshcommon: the endpoint syntax, key checks and the proof of key possession shared by all parts."""
import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from meshcommon.contract import endpoint, keys

GOOD_ENDPOINTS = ["192.0.2.1:51820", "10.0.0.1:1", "203.0.113.9:65535", "[2001:db8::1]:51820",
                  "[::ffff:1]:51820", "169.253.255.255:1", "169.255.0.1:1", "[fec0::1]:1", "[fe7f::1]:1",
                  "[64:ff9b::c000:201]:51820"]
BAD_ENDPOINTS = [
    "nonexistent.invalid:51820", "peer.example.com:51820", "999.1.1.1:51820", "1.2.3:51820",
    "0.0.0.0:51820", "[::]:51820", "127.0.0.1:51820", "[::1]:51820", "224.0.0.1:51820", "[ff02::1]:51820",
    "255.255.255.255:51820", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:051820", "192.0.2.1:+5182",
    "192.0.2.1:５１８２０", "１９２.0.2.1:51820", "192.0.2.1", "[2001:db8::1]", "2001:db8::1:51820",
    "[fe80::1%eth0/../x]:51820", "[fe80::1%eth0 x]:51820", "[fe80::1%]:51820", "[fe80::1%waytoolonginterfacename]:1",
    "192.0.2.1:51820\n", "\x1b[31m192.0.2.1:51820", "192.0.2.1 :51820", "", ":", "[]:1", "01.2.3.4:1",
    "[::ffff:127.0.0.1]:51820", "[::ffff:0.0.0.0]:51820", "[::ffff:224.0.0.1]:51820", "[::ffff:7f00:1]:1",
    "[0:0:0:0:0:ffff:192.0.2.1]:1", "[::ffff:192.0.2.1]:1", "0.1.2.3:51820",
    # A scope names an interface of the node that wrote it; link-local means each peer's own link.
    "[fe80::1%eth0]:51820", "[2001:db8::5%evil0]:51820", "[fe80::1]:51820", "[febf:ffff::1]:1", "[FE80::1]:1",
    "169.254.169.254:80", "169.254.1.1:51820",
]


@pytest.mark.parametrize("text", GOOD_ENDPOINTS)
def test_numeric_unicast_endpoints_are_accepted(text):
    ip, port = endpoint.parse(text)
    assert 1 <= port <= 65535 and not ip.is_unspecified


@pytest.mark.parametrize("text", BAD_ENDPOINTS)
def test_names_and_unusable_addresses_are_refused_with_a_reason(text):
    with pytest.raises(endpoint.BadEndpoint) as refused:
        endpoint.parse(text)
    assert repr(text)[:20] in str(refused.value) or text == ""


@given(st.text(max_size=80))
def test_any_text_either_parses_to_a_printable_numeric_endpoint_or_is_refused(text):
    try:
        ip, port = endpoint.parse(text)
    except endpoint.BadEndpoint:
        return
    assert text.isascii() and text.isprintable() and 1 <= port <= 65535 and not ip.is_multicast


# Low-order points of Curve25519 (and their non-canonical twins): every X25519 with them is all-zero.
LOW_ORDER = [bytes(32), bytes([1]) + bytes(31),
             bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
             bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
             bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")]


@pytest.mark.parametrize("raw", LOW_ORDER)
def test_all_zero_and_low_order_keys_are_refused(raw):
    with pytest.raises(keys.BadKey):
        keys.check_public_key(base64.b64encode(raw).decode())


def test_non_canonical_base64_and_wrong_lengths_are_refused():
    good = keys.public_key_of(keys.new_private_key())
    for text in ["A" * 42 + "B=", good[:-2] + "==", good + "\n", good.replace("=", ""), "", None, 5]:
        assert not keys.is_valid_public_key(text)
    assert keys.is_valid_public_key(good)


def test_the_public_key_of_a_private_key_is_rfc_7748s():
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")  # RFC 7748, 6.1
    expected = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert keys.public_key_of(keys.encode(alice)) == keys.encode(expected)
    assert len(keys.decode32(keys.new_private_key(), "private key")) == keys.KEY_LENGTH


def test_a_proof_made_with_the_private_key_verifies_and_nothing_else_does():
    control = X25519PrivateKey.generate()
    control_pub = keys.public_key_of(keys.encode(control.private_bytes_raw()))
    node = keys.new_private_key()
    public = keys.public_key_of(node)
    nonce = keys.encode(b"n" * 32)
    proof = keys.prove(node, control_pub, nonce)
    assert keys.verify(control, public, b"n" * 32, proof)
    assert not keys.verify(control, public, b"m" * 32, proof)  # another nonce
    other = keys.new_private_key()
    assert not keys.verify(control, public, b"n" * 32, keys.prove(other, control_pub, nonce))  # another key
    assert not keys.verify(control, keys.encode(bytes(32)), b"n" * 32, proof)  # a low-order key
    assert not keys.verify(control, public, b"n" * 32, "garbage")


def test_a_new_private_key_is_clamped_as_wg_genkey_makes_them():
    from meshcommon.contract import keys
    for _ in range(64):
        raw = keys.decode32(keys.new_private_key(), "private key")
        assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64 == 64

"""What the parts agree on, pure: the wire format, keys, endpoints and addresses, timings, version.

No I/O (checked by a contract); control/, agent/ and chat/ import it.
"""

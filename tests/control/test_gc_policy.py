"""The worker's memory policy: young collections less often, start-up objects frozen, one TLS record per read."""
import gc

import pytest

from control.serve import connections as httpserver


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_worker_collects_young_objects_less_often_and_never_visits_what_it_started_with(restored_gc):
    before = [[]]  # a container: tracked by the collector
    assert gc.is_tracked(before)
    middle, old = gc.get_threshold()[1:]
    httpserver.tune_gc()
    assert gc.get_threshold() == (httpserver.YOUNG_COLLECTION_EVERY, middle, old)
    assert gc.get_freeze_count() > 0
    assert not any(o is before for generation in range(3) for o in gc.get_objects(generation))


def test_tls_read_buffers_are_one_record_not_256_kib(monkeypatch):
    """asyncio's default (256 KiB per TLS connection, zero-filled) took a worker to 5.9 GB at
    10,000 agents; a record carries at most 16 KiB of plaintext."""
    import asyncio.sslproto
    import ssl
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", asyncio.sslproto.SSLProtocol.max_size)
    assert asyncio.sslproto.SSLProtocol.max_size == 256 * 1024  # what the worker changes
    httpserver.bound_tls_buffers()
    loop = asyncio.new_event_loop()
    try:
        protocol = asyncio.sslproto.SSLProtocol(loop, asyncio.Protocol(), ssl.create_default_context(), None,
                                                server_side=False, server_hostname="x")
        assert len(protocol._ssl_buffer) == httpserver.TLS_READ_BUFFER == 16 * 1024
    finally:
        loop.close()

"""The worker's garbage-collection policy: young collections less often, start-up objects frozen."""
import gc

import pytest

from control import httpserver


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
